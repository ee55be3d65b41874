"""FCM HTTP v1 provider against local OAuth2 and FCM endpoints: request shape, token cache, error mapping (spec §6.3)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from obscura.push.base import PushResult, PushTarget
from obscura.push.fcm import FcmProvider, ServiceAccount, classify_fcm_response


def _provider(google, service_account, clock=None, ttl_s=604800) -> FcmProvider:
    extra = {"clock": clock} if clock is not None else {}
    return FcmProvider(ServiceAccount.from_file(str(service_account.path)), "test-project", ttl_s=ttl_s,
                       endpoint=google.url, token_uri=google.token_uri, timeout_s=5, **extra)


def _target(token: str = "fcm-token-1", kind: str = "fcm") -> PushTarget:
    return PushTarget(uuid.uuid4(), token, kind)


async def test_request_is_the_exact_data_only_wake_up(google, service_account):
    provider = _provider(google, service_account, ttl_s=3600)
    try:
        assert await provider.send(_target("device-token-xyz")) is PushResult.SUCCESS
    finally:
        await provider.close()
    [send] = google.sends
    assert send.method == "POST" and send.path == "/v1/projects/test-project/messages:send"
    assert send.headers["authorization"] == "Bearer ya29.test-0"
    assert send.headers["content-type"] == "application/json"
    assert send.json() == {"message": {
        "token": "device-token-xyz",
        "data": {"action": "check"},
        "android": {"collapseKey": "obscura_check", "priority": "HIGH", "ttl": "3600s"},
        "apns": {"headers": {"apns-push-type": "background", "apns-priority": "5", "apns-collapse-id": "obscura_check"},
                 "payload": {"aps": {"content-available": 1}}},
    }}
    assert "notification" not in send.json()["message"]


async def test_default_ttl_and_assertion_claims(google, service_account):
    provider = _provider(google, service_account)
    try:
        await provider.send(_target())
    finally:
        await provider.close()
    assert google.sends[0].json()["message"]["android"]["ttl"] == "604800s"
    [claims] = google.assertions  # verified by the fake with the service account's public key
    assert claims["iss"] == service_account.client_email and claims["aud"] == google.token_uri
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"


async def test_access_token_is_cached_and_refreshed_when_under_300s_remain(google, service_account, clock):
    google.check_times = False
    provider = _provider(google, service_account, clock)
    try:
        for _ in range(3):
            assert await provider.send(_target()) is PushResult.SUCCESS
        assert len(google.token_requests) == 1
        clock.now += 3600 - 301  # 301 s left: still fresh
        await provider.send(_target())
        assert len(google.token_requests) == 1
        clock.now += 2  # 299 s left: refreshed before use
        await provider.send(_target())
        assert len(google.token_requests) == 2
        assert [s.headers["authorization"] for s in google.sends] == ["Bearer ya29.test-0"] * 4 + ["Bearer ya29.test-1"]
        assert google.assertions[1]["iat"] == int(clock.now)
    finally:
        await provider.close()


async def test_concurrent_sends_with_a_cold_cache_make_one_exchange(google, service_account):
    provider = _provider(google, service_account)
    try:
        results = await asyncio.gather(*(provider.send(_target(f"t{i}")) for i in range(20)))
    finally:
        await provider.close()
    assert set(results) == {PushResult.SUCCESS}
    assert len(google.token_requests) == 1 and len(google.sends) == 20


async def test_token_exchange_failure_is_other_and_retried_next_time(google, service_account):
    provider = _provider(google, service_account)
    try:
        google.token_status = 500
        assert await provider.send(_target()) is PushResult.OTHER
        assert google.sends == []
        google.token_status = 200
        assert await provider.send(_target()) is PushResult.SUCCESS
    finally:
        await provider.close()


async def test_unreachable_endpoints_are_other(service_account):
    provider = FcmProvider(ServiceAccount.from_file(str(service_account.path)), "p", ttl_s=1,
                           endpoint="http://127.0.0.1:9", token_uri="http://127.0.0.1:9/token", timeout_s=2)
    try:
        assert await provider.send(_target()) is PushResult.OTHER
    finally:
        await provider.close()


async def test_401_drops_the_cached_access_token(google, service_account):
    provider = _provider(google, service_account)
    try:
        google.fcm_replies.append((401, b'{"error":{"status":"UNAUTHENTICATED"}}'))
        assert await provider.send(_target()) is PushResult.OTHER
        assert await provider.send(_target()) is PushResult.SUCCESS
        assert len(google.token_requests) == 2
    finally:
        await provider.close()


def _err(status: str | None = None, details: list | None = None) -> bytes:
    error: dict = {"code": 0, "message": "x"}
    if status is not None:
        error["status"] = status
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


_TOKEN_VIOLATION = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": "message.token", "description": "bad"}]}]

ERROR_CASES = [
    (200, b"{}", PushResult.SUCCESS),
    (204, b"", PushResult.SUCCESS),
    (429, _err("RESOURCE_EXHAUSTED"), PushResult.QUOTA_EXCEEDED),
    (404, _err("NOT_FOUND"), PushResult.UNREGISTERED),
    (404, b"not json", PushResult.UNREGISTERED),
    (403, _err("PERMISSION_DENIED"), PushResult.UNREGISTERED),
    (400, _err("NOT_FOUND"), PushResult.UNREGISTERED),
    (400, _err("UNREGISTERED"), PushResult.UNREGISTERED),
    (500, _err("SENDER_ID_MISMATCH"), PushResult.UNREGISTERED),
    (500, _err("INTERNAL", [{"errorCode": "UNREGISTERED"}]), PushResult.UNREGISTERED),
    (400, _err("INVALID_ARGUMENT", _TOKEN_VIOLATION), PushResult.UNREGISTERED),
    (400, _err("INVALID_ARGUMENT", [{"fieldViolations": [{"field": "message.data"}]}]), PushResult.OTHER),
    (500, _err("INVALID_ARGUMENT", _TOKEN_VIOLATION), PushResult.OTHER),  # the field rule needs a 400
    (400, _err("FAILED_PRECONDITION"), PushResult.OTHER),
    (401, _err("UNAUTHENTICATED"), PushResult.OTHER),
    (500, _err("INTERNAL"), PushResult.OTHER),
    (503, _err("UNAVAILABLE"), PushResult.OTHER),
    (500, b"<html>oops</html>", PushResult.OTHER),
    (400, b'{"error": "a string"}', PushResult.OTHER),
    (400, b'{"error": {"details": "nope"}}', PushResult.OTHER),
]


@pytest.mark.parametrize(("status", "body", "expected"), ERROR_CASES)
def test_error_mapping(status, body, expected):
    assert classify_fcm_response(status, body) is expected


async def test_error_mapping_over_http(google, service_account):
    provider = _provider(google, service_account)
    google.fcm_replies.extend((s, b) for s, b, _ in ERROR_CASES if s != 401)
    try:
        results = [await provider.send(_target()) for s, _, _ in ERROR_CASES if s != 401]
    finally:
        await provider.close()
    assert results == [e for s, _, e in ERROR_CASES if s != 401]


async def test_tokens_and_keys_never_reach_the_logs(google, service_account, caplog):
    caplog.set_level(logging.DEBUG, logger="obscura")
    provider = _provider(google, service_account)
    google.fcm_replies.append((500, b"{}"))
    try:
        await provider.send(_target("secret-device-token"))
        await provider.send(_target("secret-device-token"))
    finally:
        await provider.close()
    text = caplog.text + repr(_target("secret-device-token"))
    assert "secret-device-token" not in text and "ya29" not in text and "PRIVATE KEY" not in text


def test_broken_service_account_fails_without_echoing_it(tmp_path):
    path = tmp_path / "sa.json"
    path.write_text('{"client_email": "x@y", "private_key": "-----BEGIN PRIVATE KEY-----\\nsecretstuff"}')
    with pytest.raises(ValueError) as info:
        ServiceAccount.from_file(str(path))
    assert str(path) in str(info.value) and "secretstuff" not in str(info.value)
