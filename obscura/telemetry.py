"""Metrics, spans and the OpenTelemetry pipeline; the only module that imports OpenTelemetry (spec §8, issue 7).

Services receive a ``Telemetry`` and create their instruments once, at construction:

    self._registrations = telemetry.counter("obscura_registrations_total", "successful registrations")
    self._registrations.add(1)
    self._sent.add(n, {"status": "success"})

Instruments (obscura/instruments.py) aggregate in memory (``telemetry.value(name, labels)``): a dict
update per measurement. The pipeline exports those aggregates as OpenTelemetry MetricsData every
OBSCURA_TELEMETRY_METRICS_EXPORT_INTERVAL_SECS, and the Prometheus scrape renders them.

With nothing configured the OpenTelemetry SDK is never even imported: instruments stay in memory,
``span()`` returns a shared no-op and ``http_observer()`` is None, so the front door pays nothing.
Below the request and session spans, traced service calls (``@traced("messages.send")``) and
database statements (a query logger on every pooled connection: ``query_logger()``) become child
spans, but only inside a sampled trace: an unsampled request pays one context lookup per call.

``start()`` (App.start, spec §1.3 step 2) builds the providers when an OTLP endpoint, the Prometheus
scrape or test exporters are configured; ``shutdown()`` (App.stop, spec §1.3) flushes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import re
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obscura import __version__
from obscura.instruments import (Counter, Gauge, Histogram, HistogramPoint, Labels, MetricFamily, ObservableGauge,
                                 Observations, UpDownCounter, _Instrument, family_of)
from obscura.logs import request_id_var, set_trace_context_source

__all__ = ["Telemetry", "TelemetryConfig", "traced", "Counter", "Histogram", "UpDownCounter", "Gauge",
           "ObservableGauge", "HttpObserver", "MetricFamily", "HistogramPoint", "SERVICE_NAME"]

SERVICE_NAME = "obscura-server"  # resource service.name and meter name (spec §8.1)


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"  # or "http/protobuf"
    sampling_ratio: float = 1.0
    export_interval_s: float = 60.0
    export_timeout_s: float = 10.0
    prometheus: bool = False
    service_version: str = __version__

    @classmethod
    def from_settings(cls, settings: Any) -> TelemetryConfig:
        # getattr: the protocol and Prometheus options may not exist in config.py yet (issue 7 report).
        protocol = str(getattr(settings, "telemetry_otlp_protocol", "grpc") or "grpc").lower()
        return cls(otlp_endpoint=getattr(settings, "telemetry_otlp_endpoint", None) or None,
                   otlp_protocol="http/protobuf" if protocol.startswith("http") else "grpc",
                   sampling_ratio=float(getattr(settings, "telemetry_trace_sampling_ratio", 1.0)),
                   export_interval_s=float(getattr(settings, "telemetry_metrics_export_interval_secs", 60)),
                   export_timeout_s=float(getattr(settings, "telemetry_export_timeout_secs", 10)),
                   prometheus=bool(getattr(settings, "telemetry_prometheus_enabled", False)))


# -- spans ---------------------------------------------------------------------------------------
class _NoopSpan:
    """What ``span()`` returns with tracing off: a shared object, no allocation per call."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass

    def end(self) -> None:
        pass


_NOOP_SPAN = _NoopSpan()


def _record_exception(span: Any, exc: BaseException, pipeline: Any) -> None:
    """OTel exception semantics without the message: it may carry a value we must not export (issue 7 §5)."""
    stack = "".join(traceback.format_tb(exc.__traceback__)) + type(exc).__qualname__
    span.record_exception(exc, attributes={"exception.message": type(exc).__name__,
                                           "exception.stacktrace": stack})
    span.set_status(pipeline.error_status)


class SpanHandle:
    """A live span; as a context manager it is current for the block (logs get its ids)."""

    __slots__ = ("_span", "_p", "_token")

    def __init__(self, span: Any, pipeline: Any) -> None:
        self._span, self._p, self._token = span, pipeline, None

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        _record_exception(self._span, exc, self._p)

    def end(self) -> None:
        self._span.end()

    def __enter__(self) -> SpanHandle:
        self._token = self._p.attach(self._span)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if isinstance(exc, Exception) and getattr(exc, "status", 500) >= 500:
                self.record_exception(exc)  # a client error (4xx ObscuraError) is not a failed span
        finally:
            self._p.detach(self._token)
            self._span.end()
        return False


class Telemetry:
    """One per node. Asking twice for the same name returns the same instrument."""

    def __init__(self, config: TelemetryConfig | None = None, *, span_exporters: Sequence[Any] = (),
                 metric_exporters: Sequence[Any] = (), log_exporters: Sequence[Any] = ()) -> None:
        self.config = config or TelemetryConfig()
        self._instruments: dict[str, _Instrument] = {}
        self._exporters = (tuple(span_exporters), tuple(metric_exporters), tuple(log_exporters))
        self._pipeline: Any = None
        self._observer: HttpObserver | None = None
        self._export_task: asyncio.Task[None] | None = None
        self._start_ns = time.time_ns()

    @classmethod
    def from_settings(cls, settings: Any, **exporters: Sequence[Any]) -> Telemetry:
        return cls(TelemetryConfig.from_settings(settings), **exporters)

    @property
    def enabled(self) -> bool:
        """True when start() builds an OpenTelemetry pipeline (else everything stays in memory)."""
        return bool(self.config.otlp_endpoint or self.config.prometheus or any(self._exporters))

    @property
    def running(self) -> bool:
        return self._pipeline is not None

    # -- instruments ----------------------------------------------------------------------------
    def _get(self, cls: type, name: str, description: str, unit: str, *extra: Any) -> Any:
        inst = self._instruments.get(name)
        if inst is None:
            inst = self._instruments[name] = cls(name, description, unit, *extra)
            if cls is Histogram and self.enabled:
                inst._dist = {}  # buckets only when someone will read them
        elif type(inst) is not cls:
            raise TypeError(f"metric {name} already registered as {type(inst).__name__}")
        return inst

    def counter(self, name: str, description: str = "", unit: str = "") -> Counter:
        return self._get(Counter, name, description, unit)

    def up_down_counter(self, name: str, description: str = "", unit: str = "") -> UpDownCounter:
        return self._get(UpDownCounter, name, description, unit)

    def histogram(self, name: str, description: str = "", unit: str = "",
                  buckets: Sequence[float] | None = None) -> Histogram:
        return self._get(Histogram, name, description, unit, buckets)

    def gauge(self, name: str, description: str = "", unit: str = "") -> Gauge:
        return self._get(Gauge, name, description, unit)

    def observable_gauge(self, name: str, callback: Callable[[], Observations], description: str = "",
                         unit: str = "") -> ObservableGauge:
        return self._get(ObservableGauge, name, description, unit, callback)

    def value(self, name: str, labels: Labels = None) -> Any:
        """The in-memory value of a metric (None if never recorded); for tests and /metrics."""
        inst = self._instruments.get(name)
        return None if inst is None else inst.value(labels)

    def instruments(self) -> dict[str, _Instrument]:
        return dict(self._instruments)

    def families(self) -> list[MetricFamily]:
        """Every instrument's current aggregates (observable gauges are read now)."""
        out = []
        for inst in list(self._instruments.values()):
            try:
                out.append(family_of(inst))
            except Exception:  # noqa: BLE001 - one broken callback must not hide the other metrics
                logging.getLogger("obscura.telemetry").warning("reading metric %s failed", inst.name,
                                                               exc_info=True)
        return out

    def collect(self) -> list[MetricFamily]:
        """Current metrics for the Prometheus scrape (empty unless that option is on)."""
        return self.families() if self.config.prometheus and self._pipeline is not None else []

    def metrics_data(self) -> Any:
        """The OpenTelemetry MetricsData an export would send now (None while not running)."""
        p = self._pipeline
        return None if p is None else p.metrics_data(self.families(), self._start_ns)

    # -- spans ----------------------------------------------------------------------------------
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanHandle | _NoopSpan:
        """``with telemetry.span("send_messages", {...}):`` a child span of the current one."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return _NOOP_SPAN
        return SpanHandle(p.tracer.start_span(name, attributes=attributes), p)

    def child_span(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanHandle | _NoopSpan:
        """Like ``span()``, but a no-op unless a sampled span is current: service calls and database
        work are traced only inside sampled requests, so they cost nothing measurable otherwise."""
        p = self._pipeline
        if (p is None or p.tracer is None or _no_children.get()
                or not p.current_span().get_span_context().trace_flags.sampled):
            return _NOOP_SPAN
        return SpanHandle(p.tracer.start_span(name, attributes=attributes), p)

    @contextlib.contextmanager
    def session_scope(self, span: SpanHandle | _NoopSpan) -> Iterator[None]:
        """Make a long-lived span (a WebSocket session) current for the block, so its log lines
        carry its trace id, but create no child or statement spans below it: a session's fetches
        and deletes happen per message, and spans are never per frame (issue 7 §2)."""
        if self._pipeline is None:  # nothing traces: no context change (idle sessions stay small)
            yield
            return
        token = _no_children.set(True)
        attached = span._p.attach(span._span) if isinstance(span, SpanHandle) else None
        try:
            yield
        finally:
            if attached is not None:
                span._p.detach(attached)
            _no_children.reset(token)

    def query_logger(self) -> Callable[[Any], None] | None:
        """An asyncpg query logger that records each statement as a child span of the sampled span
        that ran it (``conn.add_query_logger``); None while tracing is off (no logger, no cost).

        asyncpg calls it with ``call_soon`` in the context of the query, after it finished; the
        span is back-dated by the query's elapsed time. Only the parameterised SQL text is kept:
        never the arguments (issue 7 §5)."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return None
        return functools.partial(_record_query, p)

    def start_span(self, name: str, attributes: Mapping[str, Any] | None = None, *,
                   server: bool = False) -> SpanHandle | _NoopSpan:
        """A long-lived span (a WebSocket session) ended by ``.end()``; ``server`` sets kind=SERVER."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return _NOOP_SPAN
        return SpanHandle(p.tracer.start_span(name, attributes=attributes, kind=p.server_kind if server else
                                              p.internal_kind), p)

    def http_observer(self) -> HttpObserver | None:
        """The front door's hook for RED metrics and request spans; None while disabled (zero cost)."""
        if self._pipeline is None:
            return None
        if self._observer is None:
            self._observer = HttpObserver(self, self._pipeline)
        return self._observer

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Build the OpenTelemetry pipeline if configured (idempotent); call on the event loop."""
        if self._pipeline is not None or not self.enabled:
            return
        self._pipeline = _Pipeline(self.config, *self._exporters)
        with contextlib.suppress(RuntimeError):  # no running loop: export only at shutdown
            if self._pipeline.metric_exporters:
                self._export_task = asyncio.get_running_loop().create_task(
                    self._export_loop(), name="obscura-metrics-export")

    async def _export_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.export_interval_s)
            await self.export_metrics()

    async def export_metrics(self) -> None:
        """Push the current aggregates to the metric exporters (cumulative, like upstream's SDK)."""
        p = self._pipeline
        if p is None or not p.metric_exporters:
            return
        data = p.metrics_data(self.families(), self._start_ns)
        try:
            await asyncio.to_thread(p.export_metrics, data)
        except Exception:  # noqa: BLE001 - a collector outage must not stop the loop
            logging.getLogger("obscura.telemetry").warning("metric export failed", exc_info=True)

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush and stop exporters (spec §1.3: after the workers); bounded by ``timeout_s``."""
        if self._pipeline is None:
            return
        task, self._export_task = self._export_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        p = self._pipeline
        p.detach_logging()
        try:
            async with asyncio.timeout(timeout_s + 1.0):
                await self.export_metrics()
                await asyncio.to_thread(p.shutdown, timeout_s)
        except TimeoutError:
            logging.getLogger("obscura.telemetry").warning("telemetry flush timed out")
        finally:
            self._pipeline = self._observer = None


# -- the front door's hook -----------------------------------------------------------------------
class _HeaderGetter:
    """Lets the W3C propagator read our Headers (names already lower-case); duck-types OTel's Getter."""

    __slots__ = ()

    @staticmethod
    def get(carrier: Any, key: str) -> list[str] | None:
        return carrier.getall(key) or None

    @staticmethod
    def keys(carrier: Any) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _HeaderGetter()


class HttpObserver:
    """RED metrics and one SERVER span per request, called by obscura/http/exchange.py.

    Labels and attributes carry the route template, never the raw path (issue 7 §2), and ids only:
    no address, user agent, header or body (issue 7 §5).
    """

    __slots__ = ("_p", "_requests", "_duration")

    def __init__(self, telemetry: Telemetry, pipeline: _Pipeline) -> None:
        self._p = pipeline
        self._requests = telemetry.counter("http_server_requests_total", "HTTP requests served")
        self._duration = telemetry.histogram("http_server_request_duration_seconds", "HTTP request duration", "s")

    def on_request_start(self, req: Any) -> tuple[float, Any, Any, Any]:
        rid_token = request_id_var.set(req.request_id)
        p = self._p
        if p.tracer is None:
            return time.perf_counter(), None, None, rid_token
        # spec §8.2: W3C TraceContext; ParentBased sampling follows the caller's decision.
        parent = p.extract(req.headers, getter=_GETTER) if "traceparent" in req.headers else None
        span = p.tracer.start_span("request", context=parent, kind=p.server_kind, attributes={
            "http.request.method": req.method, "url.path": req.route or "unmatched",
            "http.route": req.route or "unmatched", "request.id": req.request_id})
        return time.perf_counter(), span, p.attach(span, parent), rid_token

    def outside_request(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn`` in a copy of the current context without the request's span: what it starts
        (a WebSocket session after the upgrade) outlives the request and must not nest under it.
        The request id stays (log lines keep it)."""
        return contextvars.copy_context().run(self._outside, fn, args)

    def _outside(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        self._p.attach_root()
        return fn(*args)

    def on_exception(self, req: Any, exc: BaseException) -> None:
        """An unexpected handler failure (the client sees a generic 500)."""
        span = self._p.current_span()
        if span.is_recording():
            _record_exception(span, exc, self._p)

    def on_request_end(self, req: Any, state: tuple[float, Any, Any, Any], status: int) -> None:
        started, span, token, rid_token = state
        elapsed_s = time.perf_counter() - started
        route = req.route or "unmatched"
        self._requests.add(1, {"method": req.method, "route": route, "status": str(status)})
        self._duration.record(elapsed_s, {"method": req.method, "route": route})
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            claims = req.state.get("claims")
            if claims is not None:  # set by obscura.api.common.Authenticator
                span.set_attribute("user.id", str(claims.user_id))
                if claims.device_id is not None:
                    span.set_attribute("device.id", str(claims.device_id))
            if status >= 500:
                span.set_status(self._p.error_status)
            span.end()
            self._p.detach(token)
        request_id_var.reset(rid_token)


# -- child spans -----------------------------------------------------------------------------------
_no_children: contextvars.ContextVar[bool] = contextvars.ContextVar("obscura_no_child_spans", default=False)


def traced(name: str) -> Callable[[Callable[..., Coroutine[Any, Any, Any]]], Callable[..., Any]]:
    """Decorate a service's coroutine method (the service keeps its Telemetry in ``_telemetry``):
    a child span ``name`` around each call inside a sampled trace, a direct call otherwise."""
    def decorate(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
            span = self._telemetry.child_span(name)
            if span is _NOOP_SPAN:
                return fn(self, *args, **kwargs)  # no extra coroutine frame
            return _in_span(span, fn(self, *args, **kwargs))
        return call
    return decorate


async def _in_span(span: SpanHandle, coro: Coroutine[Any, Any, Any]) -> Any:
    with span:  # current for the call: its database spans nest under it
        return await coro


_SQL_OP = re.compile(r"\s*(\w+)")
_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)", re.IGNORECASE)
# A statement with CTEs is named after the data-modifying statement inside it, if any.
_SQL_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
_query_names: dict[str, tuple[str, dict[str, str]]] = {}


def _query_span_meta(sql: str) -> tuple[str, dict[str, str]]:
    """``("INSERT messages", attributes)`` per the database semantic conventions; cached per text
    (the statements are our own constants, so the cache stays small; it is capped anyway)."""
    meta = _query_names.get(sql)
    if meta is None:
        op_match = _SQL_OP.match(sql)
        operation = op_match.group(1).upper() if op_match else "QUERY"
        table = _SQL_TABLE.search(sql)
        collection = table.group(1).lower() if table is not None else None
        if operation == "WITH":
            write = _SQL_WRITE.search(sql)
            if write is not None:
                operation, collection = write.group(1).split()[0].upper(), write.group(2).lower()
        attrs = {"db.system.name": "postgresql", "db.operation.name": operation, "db.query.text": sql[:2048]}
        name = operation
        if collection is not None:
            attrs["db.collection.name"] = collection
            name = f"{operation} {collection}"
        meta = (name, attrs)
        if len(_query_names) < 512:
            _query_names[sql] = meta
    return meta


def _record_query(p: _Pipeline, record: Any) -> None:
    if _no_children.get() or not p.current_span().get_span_context().trace_flags.sampled:
        return
    name, attrs = _query_span_meta(record.query)
    end_ns = time.time_ns()
    span = p.tracer.start_span(name, kind=p.client_kind, attributes=attrs,
                               start_time=end_ns - int(record.elapsed * 1e9))
    if record.exception is not None:
        span.set_attribute("error.type", type(record.exception).__qualname__)
        span.set_status(p.error_status)
    span.end(end_time=end_ns)


# -- the OpenTelemetry pipeline (built only when enabled) ----------------------------------------
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


def _otlp_exporters(config: TelemetryConfig) -> tuple[Any, Any, Any]:
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


class _Pipeline:
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
        otlp = _otlp_exporters(config) if config.otlp_endpoint else None
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
