"""What a node pushes to a collector over OTLP/HTTP and OTLP/gRPC, decoded by a test receiver (issue 7 §1)."""

from __future__ import annotations

import logging

import httpx
import pytest

from obscura import __version__
from obscura.telemetry import Telemetry, TelemetryConfig
from tests.telemetry.collector import GrpcCollector, HttpCollector
from tests.telemetry.support import running_app_with


def _attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_traces_metrics_and_logs_reach_the_collector(settings_factory, protocol):
    collector_cls = HttpCollector if protocol == "http/protobuf" else GrpcCollector
    with collector_cls() as collector:
        config = TelemetryConfig(otlp_endpoint=collector.endpoint, otlp_protocol=protocol,
                                 export_interval_s=60, export_timeout_s=5)
        telemetry = Telemetry(config)
        async with running_app_with(settings_factory(), telemetry) as app:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=10) as client:
                res = await client.get("/openapi.yaml", headers={"x-request-id": "rid-otlp"})
                assert res.status_code == 200
            with telemetry.span("operator_check"):
                logging.getLogger("obscura.test.otlp").warning("correlated line")
        # App.stop flushed every pipeline (spec §1.3 shutdown step 5) before returning.
        received = collector.received
        spans = {span.name: (resource, span) for resource, span in received.spans()}
        resource, request = spans["request"]
        assert _attrs(resource.attributes)["service.name"] == "obscura-server"
        assert _attrs(resource.attributes)["service.version"] == __version__
        attrs = _attrs(request.attributes)
        assert attrs["url.path"] == "/openapi.yaml" and attrs["request.id"] == "rid-otlp"
        assert attrs["http.response.status_code"] == 200
        assert {"http_server_requests_total", "http_server_request_duration_seconds",
                "obscura_db_pool_max_connections"} <= received.metric_names()
        [line] = [r for r in received.log_records() if r.body.string_value == "correlated line"]
        assert line.trace_id == spans["operator_check"][1].trace_id
        assert line.severity_text == "WARNING"
