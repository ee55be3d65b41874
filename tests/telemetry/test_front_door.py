"""The front door's observer: ids after authentication, OTel exception semantics, correlated logs."""

from __future__ import annotations

import io
import json
import logging
import uuid

import httpx
import pytest
from opentelemetry.trace import StatusCode

from obscura.api.common import Authenticator
from obscura.http import HttpServer, Router
from obscura.http.response import Response
from obscura.logs import make_handler
from obscura.services.tokens import TokenService
from obscura.telemetry import Telemetry
from tests.http.support import make_settings
from tests.telemetry.support import Captured

SECRET = "s3cr3t-value-that-must-not-leak"


@pytest.fixture
async def front_door():
    """(client, captured, log stream): a bare HttpServer with an observer and three routes."""
    captured = Captured()
    telemetry = captured.telemetry()
    telemetry.start()
    tokens = TokenService("x" * 32, 3600)
    authenticate = Authenticator(tokens)  # stores the claims in request.state, read by the observer
    log = logging.getLogger("obscura.test.front_door")

    async def whoami(request) -> Response:
        claims = await authenticate(request)
        log.warning("served whoami")
        return Response(200, str(claims.user_id).encode())

    async def boom(request) -> Response:
        raise RuntimeError(SECRET)

    async def nested(request) -> Response:
        with telemetry.span("service_call", {"batch.size": 3}):
            log.warning("inside the service call")
        return Response(204)

    router = Router()
    router.add("GET", "/whoami", whoami)
    router.add("GET", "/boom", boom)
    router.add("GET", "/nested", nested)
    server = HttpServer(router, settings=make_settings(), observer=telemetry.http_observer())
    port = await server.start("127.0.0.1", 0)
    stream = io.StringIO()
    handler = make_handler("json", stream)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client, captured, tokens, stream
    finally:
        log.removeHandler(handler)
        await server.shutdown(1.0)
        await telemetry.shutdown(5.0)


async def test_user_and_device_ids_after_authentication(front_door):
    client, captured, tokens, _ = front_door
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    token, _ = tokens.issue(user_id, device_id)
    assert (await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    [span] = captured.request_spans()
    assert span.attributes["user.id"] == str(user_id)
    assert span.attributes["device.id"] == str(device_id)
    assert span.attributes["url.path"] == "/whoami"
    assert token not in json.dumps(dict(span.attributes))


async def test_user_scoped_token_has_no_device_id(front_door):
    client, captured, tokens, _ = front_door
    token, _ = tokens.issue(uuid.uuid4())
    await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    [span] = captured.request_spans()
    assert "user.id" in span.attributes and "device.id" not in span.attributes


async def test_unauthorized_request_has_no_ids_and_is_not_an_error(front_door):
    client, captured, _, _ = front_door
    assert (await client.get("/whoami")).status_code == 401
    [span] = captured.request_spans()
    assert "user.id" not in span.attributes
    assert span.status.status_code == StatusCode.UNSET  # a 4xx is the client's error (OTel HTTP semconv)


async def test_handler_crash_is_recorded_with_exception_semantics_but_without_its_message(front_door):
    client, captured, _, _ = front_door
    assert (await client.get("/boom")).status_code == 500
    [span] = captured.request_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500
    [event] = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert "test_front_door.py" in event.attributes["exception.stacktrace"]
    assert SECRET not in json.dumps({k: str(v) for k, v in event.attributes.items()})


async def test_json_logs_carry_the_request_trace(front_door):
    client, captured, tokens, stream = front_door
    token, _ = tokens.issue(uuid.uuid4())
    res = await client.get("/whoami", headers={"Authorization": f"Bearer {token}", "x-request-id": "rid-42"})
    assert res.status_code == 200
    [span] = captured.request_spans()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["message"] == "served whoami"
    assert line["request_id"] == "rid-42"
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")
    # The same record went out over the OTLP log pipeline with the same trace context.
    [record] = [r.log_record for r in captured.logs.get_finished_logs() if r.log_record.body == "served whoami"]
    assert record.trace_id == span.context.trace_id
    assert record.attributes["request_id"] == "rid-42"


async def test_child_spans_nest_under_the_request(front_door):
    client, captured, _, stream = front_door
    assert (await client.get("/nested")).status_code == 204
    [child] = [s for s in captured.spans.get_finished_spans() if s.name == "service_call"]
    [request] = captured.request_spans()
    assert child.parent.span_id == request.context.span_id
    assert child.attributes["batch.size"] == 3
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["span_id"] == format(child.context.span_id, "016x")


async def test_text_logs_name_the_trace():
    captured = Captured()
    telemetry = captured.telemetry()
    telemetry.start()
    stream = io.StringIO()
    log = logging.getLogger("obscura.test.text")
    handler = make_handler("text", stream)
    log.addHandler(handler)
    try:
        with telemetry.span("work"):
            log.warning("hello")
        log.warning("outside")
    finally:
        log.removeHandler(handler)
        await telemetry.shutdown(5.0)
    [span] = captured.spans.get_finished_spans()
    inside, outside = stream.getvalue().splitlines()
    assert f"trace_id={format(span.context.trace_id, '032x')}" in inside
    assert "trace_id" not in outside


async def test_span_records_server_errors_only():
    captured = Captured()
    telemetry = captured.telemetry()
    telemetry.start()
    from obscura.errors import NotFound
    with pytest.raises(NotFound):
        with telemetry.span("lookup"):
            raise NotFound()
    with pytest.raises(ValueError):
        with telemetry.span("broken"):
            raise ValueError(SECRET)
    await telemetry.shutdown(5.0)
    spans = {s.name: s for s in captured.spans.get_finished_spans()}
    assert spans["lookup"].status.status_code == StatusCode.UNSET
    assert spans["broken"].status.status_code == StatusCode.ERROR
    assert SECRET not in str([dict(e.attributes) for e in spans["broken"].events])


def test_disabled_span_is_a_shared_no_op():
    telemetry = Telemetry()
    telemetry.start()
    assert not telemetry.running and telemetry.http_observer() is None
    assert telemetry.span("a") is telemetry.span("b")
    with telemetry.start_span("session", server=True) as handle:
        handle.set_attribute("device.id", "x")
