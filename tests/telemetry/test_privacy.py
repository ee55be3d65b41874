"""No IP, user agent, content, key, password, JWT, refresh or push token in any span, label or log (issue 7 §5)."""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid

from obscura.logs import JsonFormatter
from tests.support.users import PASSWORD as PASSWORD_USED
from tests.support.users import add_device, register

PASSWORD = "pw-Hunter2-do-not-log"
REFRESH = "refresh-token-do-not-log-0123456789"
PUSH = "push-token-do-not-log-abcdef"
CONTENT = "message-content-do-not-log"
KEY = base64.b64encode(b"\x05" + b"K" * 32).decode()  # a public key: still never exported
USER_AGENT = "PrivacyProbe/1.0 (do-not-log)"
FORWARDED_IP = "203.0.113.77"
PATH_SECRET = "path-segment-do-not-log"
QUERY_SECRET = "query-ticket-do-not-log"


def _body() -> bytes:
    return json.dumps({
        "username": "privacy_probe_user", "password": PASSWORD, "refreshToken": REFRESH, "token": PUSH,
        "identityKey": KEY, "content": CONTENT, "messages": [{"content": CONTENT}],
        "registrationId": 1, "signedPreKey": {"keyId": 1, "publicKey": KEY, "signature": KEY},
        "oneTimePreKeys": [{"keyId": 1, "publicKey": KEY}],
    }).encode()


def _exported_text(captured, records) -> str:
    """Everything the pipeline exported plus every log line, as one searchable string."""
    parts = []
    for span in captured.spans.get_finished_spans():
        parts.append(json.loads(span.to_json()).__repr__())
    data = captured.node.metrics_data()
    for rm in data.resource_metrics if data else ():
        parts.append(rm.to_json())
    for log in captured.logs.get_finished_logs():
        parts.append(log.to_json())
    fmt = JsonFormatter()
    parts.extend(fmt.format(r) for r in records)
    return "\n".join(parts)


async def test_secrets_fed_through_every_endpoint_never_reach_telemetry(traced_app, traced_http, captured,
                                                                         caplog):
    caplog.set_level(logging.DEBUG, logger="obscura")
    user = await add_device(traced_http, await register(traced_http))  # a real password, JWT and keys
    headers = {"Authorization": f"Bearer {user.token}", "User-Agent": USER_AGENT, "X-Forwarded-For": FORWARDED_IP,
               "Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    routes = traced_app._r.main_server.router.routes
    assert routes, "no routes registered"
    # Pass 1: secrets in path segments; pass 2: real ids, so requests get past validation.
    for segment in (PATH_SECRET, str(user.device_id)):
        for route in routes:
            path = re.sub(r"\{[^}]+\}", segment, route.pattern)
            res = await traced_http.request(route.method, f"{path}?ticket={QUERY_SECRET}", headers=headers,
                                            content=_body())
            assert res.status_code < 600
    await traced_http.post("/v1/sessions", json={"username": user.username, "password": PASSWORD_USED},
                           headers={"User-Agent": USER_AGENT})
    await traced_http.post("/v1/sessions/refresh", json={"refreshToken": user.refresh_token})
    await traced_http.get(f"/v1/gateway?ticket={QUERY_SECRET}", headers=headers)
    await traced_http.get(f"/unknown/{PATH_SECRET}", headers=headers)

    text = _exported_text(captured, caplog.records)
    assert len(captured.request_spans()) >= 2 * len(routes)
    for secret in (PASSWORD, PASSWORD_USED, REFRESH, PUSH, CONTENT, KEY, USER_AGENT, FORWARDED_IP, "127.0.0.1",
                   PATH_SECRET, QUERY_SECRET, user.token, user.user_token, user.refresh_token,
                   user.token.split(".")[2]):
        assert secret not in text, f"{secret!r} leaked into telemetry"
    # Opaque ids are what operators get instead.
    assert str(user.user_id) in text and str(user.device_id) in text
