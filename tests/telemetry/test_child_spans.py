"""Child spans under a sampled request: service calls and database statements (issue 7 §3)."""

from __future__ import annotations

import asyncio
import uuid

from opentelemetry.trace import SpanKind, StatusCode

from obscura._proto import obscura_pb2 as pb
from tests.support.users import bearer, register_user
from tests.support.ws import connect, send_text, submission

UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def _by_trace(captured, trace_id: int) -> list:
    return [s for s in captured.spans.get_finished_spans() if s.context.trace_id == trace_id]


def _request(captured, route: str):
    [span] = [s for s in captured.request_spans() if s.attributes["http.route"] == route]
    return span


async def test_send_has_a_service_span_with_database_spans_below(traced_app, traced_http, captured):
    alice, bob = await register_user(traced_http), await register_user(traced_http)
    captured.spans.clear()
    await send_text(traced_http, alice, bob, b"secret-message-body")
    request = _request(captured, "/v1/messages")
    spans = _by_trace(captured, request.context.trace_id)
    [service] = [s for s in spans if s.name == "messages.send"]
    assert service.parent.span_id == request.context.span_id
    assert service.kind == SpanKind.INTERNAL
    statements = [s for s in spans if s.attributes.get("db.system.name") == "postgresql"]
    inserts = [s for s in statements if s.name == "INSERT messages"]
    assert inserts, [s.name for s in spans]
    for span in statements:
        assert span.kind == SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id in {service.context.span_id, request.context.span_id}
        assert span.start_time <= span.end_time
        assert span.start_time >= request.start_time
        # Parameterised SQL only: no argument (ids, the ciphertext) is ever attached.
        assert set(span.attributes) <= {"db.system.name", "db.operation.name", "db.collection.name",
                                        "db.query.text", "error.type"}
        assert "secret-message-body" not in str(span.attributes)
        assert str(bob.device_id) not in str(span.attributes)
    assert inserts[0].attributes["db.operation.name"] == "INSERT"
    assert inserts[0].attributes["db.collection.name"] == "messages"


async def test_registration_traces_the_service_and_its_statements(traced_app, traced_http, captured):
    await register_user(traced_http)
    request = _request(captured, "/v1/users")
    spans = _by_trace(captured, request.context.trace_id)
    [service] = [s for s in spans if s.name == "accounts.register"]
    assert service.parent.span_id == request.context.span_id
    below = [s for s in spans if s.parent is not None and s.parent.span_id == service.context.span_id]
    assert any(s.name == "INSERT users" for s in below), [s.name for s in below]


async def test_failed_statement_is_marked_with_its_error_type_only(traced_app, captured):
    telemetry = traced_app.telemetry
    with telemetry.span("probe") as probe:
        async with traced_app.database.acquire() as conn:
            try:
                await conn.execute("SELECT * FROM no_such_table_for_spans")
            except Exception as exc:  # noqa: BLE001 - the failure is the point
                failed = exc
    assert failed is not None
    await asyncio.sleep(0.05)  # the query logger runs with call_soon
    [span] = [s for s in captured.spans.get_finished_spans() if s.name == "SELECT no_such_table_for_spans"]
    assert span.parent.span_id == probe._span.context.span_id
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == type(failed).__qualname__


async def test_unsampled_requests_get_no_child_spans(traced_app, traced_http, captured):
    alice, bob = await register_user(traced_http), await register_user(traced_http)
    captured.spans.clear()
    body = pb.SendMessageRequest(messages=[submission(bob.device_id, b"x")]).SerializeToString()
    res = await traced_http.post("/v1/messages", content=body, headers={
        **bearer(alice.token), "Idempotency-Key": str(uuid.uuid4()), "traceparent": UNSAMPLED})
    assert res.status_code == 200, res.text
    res = await traced_http.get(f"/v1/users/{bob.user_id}", headers={**bearer(alice.token), "traceparent": UNSAMPLED})
    assert res.status_code == 200
    await asyncio.sleep(0.05)  # query loggers run with call_soon
    assert captured.spans.get_finished_spans() == ()


async def test_sessions_make_no_statement_spans(traced_app, traced_http, captured):
    # A session's fetches and ACK deletes are per message: never spans (issue 7 §2).
    alice, bob = await register_user(traced_http), await register_user(traced_http)
    client = await connect(traced_http, bob)
    try:
        for i in range(3):
            await send_text(traced_http, alice, bob, b"m%d" % i)
        envelopes = await client.envelopes_for(3, timeout_s=5)
        client.ack(*[e.id for e in envelopes])
        await asyncio.sleep(0.8)  # past the ACK flush interval: the delete has run
        async with traced_app.database.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", bob.device_id) == 0
    finally:
        await client.close()
    await asyncio.sleep(0.1)
    names = [s.name for s in captured.spans.get_finished_spans()]
    assert "websocket_session" in names
    assert not [n for n in names if n.startswith(("DELETE messages", "SELECT messages", "SELECT one_time_pre_keys"))], names
