"""Spans and RED metrics from real requests against an in-process node (issue 7 §2-3)."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode

from obscura import __version__


async def test_request_span_for_openapi(traced_app, traced_http, captured):
    res = await traced_http.get("/openapi.yaml", headers={"x-request-id": "rid-openapi-1"})
    assert res.status_code == 200
    [span] = captured.request_spans()
    assert span.kind == SpanKind.SERVER
    assert dict(span.attributes) == {
        "http.request.method": "GET", "url.path": "/openapi.yaml", "http.route": "/openapi.yaml",
        "request.id": "rid-openapi-1", "http.response.status_code": 200}
    assert span.status.status_code == StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "obscura-server"
    assert span.resource.attributes["service.version"] == __version__
    assert span.instrumentation_scope.name == "obscura-server"


async def test_unmatched_path_uses_a_fixed_label_never_the_raw_path(traced_app, traced_http, captured):
    res = await traced_http.get("/no/such/f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert res.status_code == 404
    [span] = captured.request_spans()
    assert span.attributes["url.path"] == "unmatched"
    assert span.attributes["http.response.status_code"] == 404
    assert captured.point("http_server_requests_total", method="GET", route="unmatched", status="404").value == 1
    hist = captured.point("http_server_request_duration_seconds", method="GET", route="unmatched")
    assert hist.count == 1 and hist.sum > 0
    assert hist.explicit_bounds[0] == 0.001  # seconds buckets, not OTel's millisecond defaults
    assert traced_app.telemetry.value("http_server_requests_total",
                                      {"method": "GET", "route": "unmatched", "status": "404"}) == 1


async def test_red_counter_moves_per_route_and_status(traced_app, traced_http, captured):
    for _ in range(3):
        assert (await traced_http.get("/openapi.yaml")).status_code == 200
    assert (await traced_http.post("/openapi.yaml")).status_code == 405
    assert captured.point("http_server_requests_total", method="GET", route="/openapi.yaml",
                          status="200").value == 3
    assert captured.point("http_server_request_duration_seconds", method="GET", route="/openapi.yaml").count == 3
    assert captured.point("http_server_requests_total", method="POST", route="unmatched", status="405").value == 1


async def test_incoming_traceparent_is_the_parent(traced_app, traced_http, captured):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    await traced_http.get("/openapi.yaml", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    [span] = captured.request_spans()
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == parent_id
    assert span.parent.is_remote


async def test_unsampled_parent_is_followed(traced_app, traced_http, captured):
    # ParentBased: a caller that did not sample makes us not record either (spec §8.2).
    await traced_http.get("/openapi.yaml", headers={
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
    assert captured.request_spans() == []
    assert captured.point("http_server_requests_total", method="GET", route="/openapi.yaml",
                          status="200").value == 1


async def test_readyz_sets_health_gauges_and_is_not_traced(traced_app, traced_mgmt, captured):
    assert (await traced_mgmt.get("/readyz")).status_code == 200
    for component in ("database", "storage", "pubsub"):
        assert traced_app.telemetry.value("obscura_health_status", {"component": component}) == 1
        assert captured.point("obscura_health_status", component=component).value == 1
    assert captured.request_spans() == []  # probes on the management port are not request spans


async def test_pool_saturation_gauges(traced_app, captured):
    assert captured.point("obscura_db_pool_max_connections").value == 10
    active, idle = captured.point("obscura_db_pool_active_connections"), captured.point(
        "obscura_db_pool_idle_connections")
    assert active.value >= 0 and idle.value >= 0
    assert active.value + idle.value == traced_app.database.pool.get_size()


async def test_facade_instruments_become_otel_instruments(traced_app, captured):
    t = traced_app.telemetry
    t.counter("obscura_test_counter_total", "test").add(2, {"status": "success"})
    t.up_down_counter("obscura_test_live").add(3)
    t.up_down_counter("obscura_test_live").add(-1)
    t.histogram("obscura_test_size_bytes").record(2048)
    t.gauge("obscura_test_gauge").set(7, {"component": "x"})
    assert captured.point("obscura_test_counter_total", status="success").value == 2
    assert captured.point("obscura_test_live").value == 2
    size = captured.point("obscura_test_size_bytes")
    assert (size.count, size.sum, size.explicit_bounds[0]) == (1, 2048, 1024)
    assert captured.point("obscura_test_gauge", component="x").value == 7
    assert t.value("obscura_test_counter_total", {"status": "success"}) == 2
