"""A test OTLP collector: receives what the server pushes over OTLP/HTTP or gRPC and decodes it."""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc


@dataclass
class Received:
    traces: list[Any] = field(default_factory=list)   # ExportTraceServiceRequest
    metrics: list[Any] = field(default_factory=list)  # ExportMetricsServiceRequest
    logs: list[Any] = field(default_factory=list)     # ExportLogsServiceRequest
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[tuple[Any, Any]]:
        """(resource, span) pairs."""
        return [(rs.resource, span) for req in self.traces for rs in req.resource_spans
                for ss in rs.scope_spans for span in ss.spans]

    def metric_names(self) -> set[str]:
        return {m.name for req in self.metrics for rm in req.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics}

    def log_records(self) -> list[Any]:
        return [lr for req in self.logs for rl in req.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]


_ROUTES = {
    "/v1/traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse, "traces"),
    "/v1/metrics": (metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse, "metrics"),
    "/v1/logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse, "logs"),
}


class HttpCollector:
    """OTLP/HTTP (protobuf) on 127.0.0.1; ``endpoint`` is the base URL the server is given."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                route = _ROUTES.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                req_cls, resp_cls, bucket = route
                with received.lock:
                    getattr(received, bucket).append(req_cls.FromString(body))
                payload = resp_cls().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcCollector:
    """OTLP/gRPC trace, metrics and logs services on 127.0.0.1 (the upstream default transport)."""

    def __init__(self) -> None:
        self.received = received = Received()

        def keep(bucket: str, response: Any) -> Any:
            def export(self: Any, request: Any, context: Any) -> Any:
                with received.lock:
                    getattr(received, bucket).append(request)
                return response
            return export

        trace_svc = type("T", (trace_grpc.TraceServiceServicer,),
                         {"Export": keep("traces", trace_pb.ExportTraceServiceResponse())})
        metrics_svc = type("M", (metrics_grpc.MetricsServiceServicer,),
                           {"Export": keep("metrics", metrics_pb.ExportMetricsServiceResponse())})
        logs_svc = type("L", (logs_grpc.LogsServiceServicer,),
                        {"Export": keep("logs", logs_pb.ExportLogsServiceResponse())})
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_grpc.add_TraceServiceServicer_to_server(trace_svc(), self._server)
        metrics_grpc.add_MetricsServiceServicer_to_server(metrics_svc(), self._server)
        logs_grpc.add_LogsServiceServicer_to_server(logs_svc(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def __enter__(self) -> GrpcCollector:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
