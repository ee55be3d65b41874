"""Metric export: the facade's aggregates pushed periodically and at shutdown as OTLP MetricsData."""

from __future__ import annotations

import asyncio
import uuid

from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, Sum

from obscura.telemetry import TelemetryConfig
from tests.telemetry.support import Captured


def _metrics(data) -> dict:
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


async def test_periodic_export_pushes_cumulative_aggregates():
    captured = Captured()
    telemetry = captured.telemetry(TelemetryConfig(export_interval_s=0.01))
    sent = telemetry.counter("obscura_messages_sent_total", "inserted message rows")
    live = telemetry.up_down_counter("obscura_websocket_connections")
    sizes = telemetry.histogram("obscura_message_fetch_batch_size")
    health = telemetry.gauge("obscura_health_status")
    telemetry.start()
    try:
        sent.add(3, {"status": "success"})
        live.add(2)
        live.add(-1)
        sizes.record(1)
        sizes.record(7, times=2)  # a batch of equal observations in one call: exported as two
        sizes.record(5000)
        health.set(0, {"component": "pubsub"})
        captured.metrics.exported_event.clear()
        await asyncio.to_thread(captured.metrics.exported_event.wait, 10)
        metrics = _metrics(captured.metrics.exported[-1])
    finally:
        await telemetry.shutdown(5)
    assert isinstance(metrics["obscura_messages_sent_total"].data, Sum)
    assert metrics["obscura_messages_sent_total"].data.is_monotonic
    assert metrics["obscura_messages_sent_total"].data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    [point] = metrics["obscura_messages_sent_total"].data.data_points
    assert (dict(point.attributes), point.value) == ({"status": "success"}, 3)
    assert not metrics["obscura_websocket_connections"].data.is_monotonic
    assert metrics["obscura_websocket_connections"].data.data_points[0].value == 1
    hist = metrics["obscura_message_fetch_batch_size"].data
    assert isinstance(hist, Histogram)
    [h] = hist.data_points
    assert (h.count, h.sum, h.min, h.max) == (4, 5015, 1, 5000)
    assert list(h.explicit_bounds[:4]) == [1.0, 2.0, 5.0, 10.0]
    assert list(h.bucket_counts) == [1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1]  # 5000 lands above the last bound
    assert isinstance(metrics["obscura_health_status"].data, Gauge)
    scope = captured.metrics.exported[-1].resource_metrics[0].scope_metrics[0].scope
    assert scope.name == "obscura-server"


async def test_shutdown_pushes_a_final_export():
    captured = Captured()
    telemetry = captured.telemetry(TelemetryConfig(export_interval_s=3600))
    telemetry.start()
    telemetry.counter("obscura_logins_total").add(1)
    assert captured.metrics.exported == []
    await telemetry.shutdown(5)
    assert "obscura_logins_total" in _metrics(captured.metrics.exported[-1])
    assert not telemetry.running


async def test_broken_observable_gauge_does_not_hide_other_metrics():
    captured = Captured()
    telemetry = captured.telemetry()
    telemetry.start()

    def broken():
        raise RuntimeError("pool closed")

    telemetry.observable_gauge("obscura_db_pool_active_connections", broken)
    telemetry.counter("obscura_logouts_total").add(1)
    names = set(_metrics(telemetry.metrics_data()))
    await telemetry.shutdown(5)
    assert "obscura_logouts_total" in names and "obscura_db_pool_active_connections" not in names


async def _instance_id() -> str:
    telemetry = Captured().telemetry(TelemetryConfig(export_interval_s=3600))
    telemetry.start()
    try:
        telemetry.counter("obscura_logins_total").add(1)
        [rm] = telemetry.metrics_data().resource_metrics
        return rm.resource.attributes["service.instance.id"]
    finally:
        await telemetry.shutdown(5)


async def test_exports_carry_a_per_process_instance_id(monkeypatch):
    # Workers and nodes export the same metric names: the collector keeps their cumulative series
    # apart only by service.instance.id (the SDK's default resource gives each process a random one).
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    first, second = await _instance_id(), await _instance_id()
    assert first == second and str(uuid.UUID(first)) == first  # one per process (workers are spawned)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=node-a")
    assert await _instance_id() == "node-a"  # the operator's choice wins
