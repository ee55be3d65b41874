"""Metrics and spans (spec §8, issue 7); this package is the only one that imports OpenTelemetry.

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
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obscura import __version__
from obscura.instruments import (Counter, Gauge, Histogram, HistogramPoint, Labels, MetricFamily, ObservableGauge,
                                 Observations, UpDownCounter, _Instrument, family_of)
from obscura.telemetry.pipeline import SERVICE_NAME, Pipeline
from obscura.telemetry.spans import NOOP_SPAN, HttpObserver, NoopSpan, SpanHandle, no_children, record_query, traced

__all__ = ["Telemetry", "TelemetryConfig", "traced", "Counter", "Histogram", "UpDownCounter", "Gauge",
           "ObservableGauge", "HttpObserver", "MetricFamily", "HistogramPoint", "SERVICE_NAME"]


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
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanHandle | NoopSpan:
        """``with telemetry.span("send_messages", {...}):`` a child span of the current one."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return NOOP_SPAN
        return SpanHandle(p.tracer.start_span(name, attributes=attributes), p)

    def child_span(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanHandle | NoopSpan:
        """Like ``span()``, but a no-op unless a sampled span is current: service calls and database
        work are traced only inside sampled requests, so they cost nothing measurable otherwise."""
        p = self._pipeline
        if (p is None or p.tracer is None or no_children.get()
                or not p.current_span().get_span_context().trace_flags.sampled):
            return NOOP_SPAN
        return SpanHandle(p.tracer.start_span(name, attributes=attributes), p)

    @contextlib.contextmanager
    def session_scope(self, span: SpanHandle | NoopSpan) -> Iterator[None]:
        """Make a long-lived span (a WebSocket session) current for the block, so its log lines
        carry its trace id, but create no child or statement spans below it: a session's fetches
        and deletes happen per message, and spans are never per frame (issue 7 §2)."""
        if self._pipeline is None:  # nothing traces: no context change (idle sessions stay small)
            yield
            return
        token = no_children.set(True)
        attached = span._p.attach(span._span) if isinstance(span, SpanHandle) else None
        try:
            yield
        finally:
            if attached is not None:
                span._p.detach(attached)
            no_children.reset(token)

    def query_logger(self) -> Callable[[Any], None] | None:
        """An asyncpg query logger that records each statement as a child span of the sampled span
        that ran it (``conn.add_query_logger``); None while tracing is off (no logger, no cost).

        asyncpg calls it with ``call_soon`` in the context of the query, after it finished; the
        span is back-dated by the query's elapsed time. Only the parameterised SQL text is kept:
        never the arguments (issue 7 §5)."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return None
        return functools.partial(record_query, p)

    def start_span(self, name: str, attributes: Mapping[str, Any] | None = None, *,
                   server: bool = False) -> SpanHandle | NoopSpan:
        """A long-lived span (a WebSocket session) ended by ``.end()``; ``server`` sets kind=SERVER."""
        p = self._pipeline
        if p is None or p.tracer is None:
            return NOOP_SPAN
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
        self._pipeline = Pipeline(self.config, *self._exporters)
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
