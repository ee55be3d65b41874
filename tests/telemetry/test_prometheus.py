"""The optional Prometheus scrape on the management port (decisions §2, issue 7 §6)."""

from __future__ import annotations

import math

import httpx

from obscura.api.metrics import CONTENT_TYPE, merge_prometheus, render_prometheus
from obscura.telemetry import HistogramPoint, MetricFamily, Telemetry, TelemetryConfig
from tests.telemetry.support import running_app_with


async def test_metrics_endpoint_serves_text_format(settings_factory):
    telemetry = Telemetry(TelemetryConfig(prometheus=True))
    async with running_app_with(settings_factory(), telemetry) as app:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(2):
                await client.get(f"http://127.0.0.1:{app.port}/openapi.yaml")
            await client.get(f"http://127.0.0.1:{app.mgmt_port}/readyz")
            res = await client.get(f"http://127.0.0.1:{app.mgmt_port}/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"] == CONTENT_TYPE
    lines = res.text.splitlines()
    assert "# TYPE http_server_requests_total counter" in lines
    assert 'http_server_requests_total{method="GET",route="/openapi.yaml",status="200"} 2' in lines
    assert "# TYPE http_server_request_duration_seconds histogram" in lines
    assert 'http_server_request_duration_seconds_bucket{method="GET",route="/openapi.yaml",le="+Inf"} 2' in lines
    assert 'http_server_request_duration_seconds_count{method="GET",route="/openapi.yaml"} 2' in lines
    assert 'obscura_health_status{component="database"} 1' in lines
    assert "obscura_db_pool_max_connections 10" in lines


def test_render_escapes_labels_and_accumulates_buckets():
    families = [
        MetricFamily("obscura_x_total", "counter", "a \"quoted\" help", [({"reason": 'a"b\\c\nd'}, 3)]),
        MetricFamily("obscura_size_bytes", "histogram", "", [({}, HistogramPoint((1.0, 10.0), (1, 2, 3), 42.5, 6))]),
        MetricFamily("obscura_g", "gauge", "", [({}, 0.25), ({"k": "v"}, math.inf)]),
    ]
    text = render_prometheus(families).decode()
    assert text.splitlines() == [
        '# HELP obscura_x_total a \\"quoted\\" help',
        "# TYPE obscura_x_total counter",
        'obscura_x_total{reason="a\\"b\\\\c\\nd"} 3',
        "# TYPE obscura_size_bytes histogram",
        'obscura_size_bytes_bucket{le="1"} 1',
        'obscura_size_bytes_bucket{le="10"} 3',
        'obscura_size_bytes_bucket{le="+Inf"} 6',
        "obscura_size_bytes_sum 42.5",
        "obscura_size_bytes_count 6",
        "# TYPE obscura_g gauge",
        "obscura_g 0.25",
        'obscura_g{k="v"} +Inf',
    ]
    assert render_prometheus([]) == b""


def test_merge_labels_every_sample_with_its_worker_and_keeps_one_header_per_family():
    page0 = render_prometheus([
        MetricFamily("obscura_x_total", "counter", "x help", [({"route": "/a b"}, 3)]),
        MetricFamily("obscura_size_bytes", "histogram", "", [({}, HistogramPoint((1.0,), (1, 2), 4.0, 3))]),
    ])
    page1 = render_prometheus([
        MetricFamily("obscura_x_total", "counter", "x help", [({"route": "/a b"}, 5)]),
        MetricFamily("obscura_g", "gauge", "", [({}, 2)]),
    ])
    text = merge_prometheus([("0", page0), ("1", page1), ("2", None)]).decode()
    assert text.splitlines() == [
        "# HELP obscura_worker_up 1 when the worker answered this scrape",
        "# TYPE obscura_worker_up gauge",
        'obscura_worker_up{worker="0"} 1',
        'obscura_worker_up{worker="1"} 1',
        'obscura_worker_up{worker="2"} 0',
        "# HELP obscura_x_total x help",
        "# TYPE obscura_x_total counter",
        'obscura_x_total{worker="0",route="/a b"} 3',
        'obscura_x_total{worker="1",route="/a b"} 5',
        "# TYPE obscura_size_bytes histogram",
        'obscura_size_bytes_bucket{worker="0",le="1"} 1',
        'obscura_size_bytes_bucket{worker="0",le="+Inf"} 3',
        'obscura_size_bytes_sum{worker="0"} 4',
        'obscura_size_bytes_count{worker="0"} 3',
        "# TYPE obscura_g gauge",
        'obscura_g{worker="1"} 2',
    ]
