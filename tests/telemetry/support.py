"""Helpers for the telemetry tests: in-memory exporters and a node built around a given Telemetry."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obscura.app import App
from obscura.telemetry import Telemetry, TelemetryConfig


class MemoryMetricExporter:
    """Keeps every MetricsData pushed to it (the OTLP metric exporters' interface)."""

    def __init__(self) -> None:
        self.exported: list[Any] = []
        self.exported_event = threading.Event()

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self.exported.append(metrics_data)
        self.exported_event.set()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


@dataclass
class Captured:
    """What a pipeline exported, kept in memory."""

    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    logs: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)
    metrics: MemoryMetricExporter = field(default_factory=lambda: MemoryMetricExporter())
    node: Telemetry | None = None

    def telemetry(self, config: TelemetryConfig | None = None) -> Telemetry:
        self.node = Telemetry(config, span_exporters=[self.spans], metric_exporters=[self.metrics],
                              log_exporters=[self.logs])
        return self.node

    def request_spans(self) -> list[Any]:
        return [s for s in self.spans.get_finished_spans() if s.name == "request"]

    def points(self, name: str) -> list[Any]:
        """Data points of metric ``name`` now (cumulative temporality)."""
        data = self.node.metrics_data()  # what the next export would push
        return [dp for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
                for metric in sm.metrics if metric.name == name for dp in metric.data.data_points]

    def point(self, name: str, **labels: str) -> Any:
        matches = [dp for dp in self.points(name) if dict(dp.attributes or {}) == labels]
        assert len(matches) == 1, (name, labels, [dict(dp.attributes or {}) for dp in self.points(name)])
        return matches[0]


@contextlib.asynccontextmanager
async def running_app_with(settings: Any, telemetry: Telemetry) -> AsyncIterator[App]:
    node = App(settings, telemetry=telemetry)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
