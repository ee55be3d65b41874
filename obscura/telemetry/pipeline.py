"""The OpenTelemetry pipeline of one node: providers, exporters, the log bridge (spec §8).

Telemetry.start() builds a Pipeline only when an OTLP endpoint, the Prometheus scrape or test
exporters are configured. OpenTelemetry is imported inside these functions, never at module level,
so a node with telemetry off never loads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from obscura.instruments import MetricFamily
from obscura.logs import request_id_var, set_trace_context_source

if TYPE_CHECKING:
    from obscura.telemetry import TelemetryConfig

__all__ = ["Pipeline", "otlp_exporters", "SERVICE_NAME"]

SERVICE_NAME = "obscura-server"  # resource service.name and meter name (spec §8.1)

_SEVERITY = ((logging.CRITICAL, 21), (logging.ERROR, 17), (logging.WARNING, 13), (logging.INFO, 9), (0, 5))


class _OtelLogHandler(logging.Handler):
    """stdlib logging -> OTLP log records carrying the active trace context (spec §8.2)."""

    def __init__(self, logger: Any, get_context: Callable[[], Any], standard: frozenset[str]) -> None:
        super().__init__()
        self._logger, self._get_context, self._standard = logger, get_context, standard

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("opentelemetry"):
            return  # never feed an exporter's own complaints back into it
        try:
            attrs: dict[str, Any] = {"logger": record.name}
            rid = request_id_var.get()
            if rid:
                attrs["request_id"] = rid
            for key, value in record.__dict__.items():
                if key not in self._standard and not key.startswith("_"):
                    attrs[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
            if record.exc_info and record.exc_info[0] is not None:
                attrs["exception.type"] = record.exc_info[0].__name__
                attrs["exception.stacktrace"] = logging.Formatter().formatException(record.exc_info)
            severity = next(n for level, n in _SEVERITY if record.levelno >= level)
            self._logger.emit(timestamp=int(record.created * 1e9), context=self._get_context(),
                              severity_number=self._severity(severity), severity_text=record.levelname,
                              body=record.getMessage(), attributes=attrs)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    @staticmethod
    def _severity(n: int) -> Any:
        from opentelemetry._logs import SeverityNumber
        return SeverityNumber(n)


def otlp_exporters(config: TelemetryConfig) -> tuple[Any, Any, Any]:
    """Span, metric and log exporters for the endpoint: gRPC as upstream, or OTLP/HTTP (protobuf)."""
    base, timeout_s = config.otlp_endpoint.rstrip("/"), config.export_timeout_s  # type: ignore[union-attr]
    if config.otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return (OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=timeout_s),
                OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout_s),
                OTLPLogExporter(endpoint=f"{base}/v1/logs", timeout=timeout_s))
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
    insecure = True if base.startswith("http://") else None
    return (GrpcSpanExporter(endpoint=base, insecure=insecure, timeout=timeout_s),
            GrpcMetricExporter(endpoint=base, insecure=insecure, timeout=timeout_s),
            GrpcLogExporter(endpoint=base, insecure=insecure, timeout=timeout_s))


class Pipeline:
    """Tracer and logger providers and the metric exporters of one node; never OpenTelemetry globals."""

    def __init__(self, config: TelemetryConfig, span_exporters: Sequence[Any], metric_exporters: Sequence[Any],
                 log_exporters: Sequence[Any]) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._context, self._trace = context, trace
        self.server_kind, self.internal_kind, self.client_kind = SpanKind.SERVER, SpanKind.INTERNAL, SpanKind.CLIENT
        self.error_status = Status(StatusCode.ERROR)
        self.extract = TraceContextTextMapPropagator().extract
        self.current_span = trace.get_current_span
        version = config.service_version
        self.resource = Resource.create({"service.name": SERVICE_NAME, "service.version": version})
        self.scope = InstrumentationScope(SERVICE_NAME, version)  # the meter of spec §8.1
        otlp = otlp_exporters(config) if config.otlp_endpoint else None
        self.timeout_ms = timeout_ms = int(config.export_timeout_s * 1000)
        self.tracer_provider = self.tracer = self.logger_provider = self.log_handler = None
        self.metric_exporters = list(metric_exporters) + ([otlp[1]] if otlp else [])

        if span_exporters or otlp:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            tp = TracerProvider(resource=self.resource,
                                sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio)))
            for exporter in span_exporters:
                tp.add_span_processor(SimpleSpanProcessor(exporter))
            if otlp:
                tp.add_span_processor(BatchSpanProcessor(otlp[0], export_timeout_millis=timeout_ms))
            self.tracer_provider, self.tracer = tp, tp.get_tracer(SERVICE_NAME, version)
            set_trace_context_source(_trace_ids_reader(trace.get_current_span))

        if log_exporters or otlp:
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor

            from obscura.logs import STANDARD_RECORD_ATTRS
            lp = LoggerProvider(resource=self.resource)
            for exporter in log_exporters:
                lp.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            if otlp:
                lp.add_log_record_processor(BatchLogRecordProcessor(otlp[2], export_timeout_millis=timeout_ms))
            self.logger_provider = lp
            self.log_handler = _OtelLogHandler(lp.get_logger(SERVICE_NAME, version), context.get_current,
                                               STANDARD_RECORD_ATTRS)
            logging.getLogger().addHandler(self.log_handler)

    def attach(self, span: Any, parent: Any = None) -> Any:
        return self._context.attach(self._trace.set_span_in_context(span, parent))

    def attach_root(self) -> None:
        """Make the current context carry no span (in a context copy the caller throws away)."""
        self._context.attach(self._context.Context())

    def detach(self, token: Any) -> None:
        if token is not None:
            self._context.detach(token)

    def metrics_data(self, families: list[MetricFamily], start_ns: int) -> Any:
        """The facade's aggregates as OTLP-ready MetricsData: cumulative sums, gauges, histograms."""
        from opentelemetry.sdk.metrics.export import (AggregationTemporality, Gauge, HistogramDataPoint, Metric,
                                                      MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics,
                                                      Sum)
        from opentelemetry.sdk.metrics.export import Histogram as OtelHistogram
        now, cumulative = time.time_ns(), AggregationTemporality.CUMULATIVE
        metrics = []
        for fam in families:
            if not fam.points:
                continue
            if fam.kind == "histogram":
                data: Any = OtelHistogram([HistogramDataPoint(
                    labels, start_ns, now, h.count, h.sum, list(h.counts), list(h.bounds), h.min, h.max)
                    for labels, h in fam.points], cumulative)  # type: ignore[union-attr]
            else:
                points = [NumberDataPoint(labels, start_ns, now, value) for labels, value in fam.points]
                data = Gauge(points) if fam.kind == "gauge" else Sum(points, cumulative, fam.kind == "counter")
            metrics.append(Metric(fam.name, fam.description, fam.unit, data))
        return MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(self.scope, metrics, "")], "")])

    def export_metrics(self, data: Any) -> None:
        for exporter in self.metric_exporters:
            exporter.export(data, timeout_millis=self.timeout_ms)

    def detach_logging(self) -> None:
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)

    def shutdown(self, timeout_s: float) -> None:
        """Flush everything still buffered, then stop the exporters (blocking: run in a thread)."""
        timeout_ms = int(timeout_s * 1000)
        for provider in (self.tracer_provider, self.logger_provider):
            if provider is not None:
                provider.force_flush(timeout_ms)
                provider.shutdown()
        for exporter in self.metric_exporters:
            exporter.shutdown(timeout_millis=timeout_ms)


def _trace_ids_reader(get_current_span: Callable[[], Any]) -> Callable[[], tuple[str, str] | None]:
    def ids() -> tuple[str, str] | None:
        ctx = get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return ids
