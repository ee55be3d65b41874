"""APNs provider against a local HTTP/2 server: headers, payload, provider JWT, error mapping (issue 6)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from obscura.push.apns import APNS_HOSTS, ApnsProvider, classify_apns_response, load_signing_key
from obscura.push.base import PushResult, PushTarget
from tests.push.fakes import FakeApns, self_signed_tls

KEY_ID, TEAM_ID, TOPIC = "TEST123456", "TEAM123456", "org.obscura.app"
DEVICE_TOKEN = "a1" * 32


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def apns(apns_key, tls):
    async with FakeApns(apns_key[1], tls=tls[0], key_id=KEY_ID, team_id=TEAM_ID) as fake:
        yield fake


def _provider(apns_key, endpoint: str, verify, clock=None) -> ApnsProvider:
    extra = {"clock": clock} if clock is not None else {}
    return ApnsProvider(load_signing_key(apns_key[0].read_bytes()), key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC,
                        endpoint=endpoint, timeout_s=5, verify=verify, **extra)


def _target(token: str = DEVICE_TOKEN) -> PushTarget:
    return PushTarget(uuid.uuid4(), token, "apns")


async def test_background_wake_up_over_http2_with_tls(apns, apns_key, tls):
    provider = _provider(apns_key, apns.url, tls[1])
    try:
        assert await provider.send(_target()) is PushResult.SUCCESS
    finally:
        await provider.close()
    [req] = apns.requests
    assert req.http_version == "2" and req.alpn == "h2"
    assert req.method == "POST" and req.path == f"/3/device/{DEVICE_TOKEN}"
    assert req.headers["apns-push-type"] == "background"
    assert req.headers["apns-priority"] == "5"
    assert req.headers["apns-collapse-id"] == "obscura_check"
    assert req.headers["apns-topic"] == TOPIC
    assert req.headers["authorization"].startswith("bearer ")
    assert json.loads(req.body) == {"aps": {"content-available": 1}, "action": "check"}
    aps = json.loads(req.body)["aps"]
    assert "alert" not in aps and "sound" not in aps and "badge" not in aps
    [claims] = apns.jwt_claims  # ES256, verified by the fake with the key's public half
    assert claims["iss"] == TEAM_ID and set(claims) == {"iss", "iat"}


async def test_clear_text_endpoint_uses_http2_prior_knowledge(apns_key):
    async with FakeApns(apns_key[1], key_id=KEY_ID, team_id=TEAM_ID) as fake:
        provider = _provider(apns_key, fake.url, True)
        try:
            assert await provider.send(_target()) is PushResult.SUCCESS
        finally:
            await provider.close()
    assert fake.requests[0].http_version == "2" and fake.requests[0].alpn is None


async def test_provider_jwt_is_reused_then_refreshed_within_apples_window(apns, apns_key, tls, clock):
    import time
    clock.now = time.time() - 3000  # the fake checks iat against real time; stay in the past
    provider = _provider(apns_key, apns.url, tls[1], clock)
    try:
        await provider.send(_target())
        clock.now += 20 * 60  # Apple refuses refreshes more often than every 20 minutes
        await provider.send(_target())
        assert provider.tokens.issued == 1
        clock.now += 20 * 60  # 40 minutes: renewed well before the 60-minute expiry
        await provider.send(_target())
        assert provider.tokens.issued == 2
    finally:
        await provider.close()
    auths = [r.headers["authorization"] for r in apns.requests]
    assert auths[0] == auths[1] != auths[2]
    assert apns.jwt_claims[2]["iat"] - apns.jwt_claims[0]["iat"] == 40 * 60


async def test_expired_provider_token_is_retried_with_a_fresh_one(apns, apns_key, tls):
    provider = _provider(apns_key, apns.url, tls[1])
    apns.replies.append((403, b'{"reason":"ExpiredProviderToken"}'))
    try:
        assert await provider.send(_target()) is PushResult.OTHER
        assert provider.tokens.issued == 1
        assert await provider.send(_target()) is PushResult.SUCCESS
        assert provider.tokens.issued == 2
    finally:
        await provider.close()


ERROR_CASES = [
    (200, b"", PushResult.SUCCESS),
    (410, b'{"reason":"Unregistered","timestamp":1700000000000}', PushResult.UNREGISTERED),
    (410, b'{"reason":"ExpiredToken"}', PushResult.UNREGISTERED),
    (400, b'{"reason":"BadDeviceToken"}', PushResult.UNREGISTERED),
    (400, b'{"reason":"Unregistered"}', PushResult.UNREGISTERED),
    (429, b'{"reason":"TooManyRequests"}', PushResult.QUOTA_EXCEEDED),
    (400, b'{"reason":"BadTopic"}', PushResult.OTHER),
    (400, b'{"reason":"DeviceTokenNotForTopic"}', PushResult.OTHER),
    (403, b'{"reason":"InvalidProviderToken"}', PushResult.OTHER),
    (500, b'{"reason":"InternalServerError"}', PushResult.OTHER),
    (503, b'{"reason":"ServiceUnavailable"}', PushResult.OTHER),
    (500, b"garbage", PushResult.OTHER),
]


@pytest.mark.parametrize(("status", "body", "expected"), ERROR_CASES)
def test_error_mapping(status, body, expected):
    assert classify_apns_response(status, body) is expected


async def test_error_mapping_over_http2(apns, apns_key, tls):
    provider = _provider(apns_key, apns.url, tls[1])
    apns.replies.extend((s, b) for s, b, _ in ERROR_CASES)
    try:
        results = [await provider.send(_target()) for _ in ERROR_CASES]
    finally:
        await provider.close()
    assert results == [e for _, _, e in ERROR_CASES]


async def test_untrusted_certificate_or_dead_host_is_other(apns, apns_key):
    provider = _provider(apns_key, apns.url, True)  # the system store does not trust the fake
    try:
        assert await provider.send(_target()) is PushResult.OTHER
    finally:
        await provider.close()
    assert apns.requests == []


async def test_token_is_path_quoted_and_never_logged(apns, apns_key, tls, caplog):
    # Our loggers at DEBUG; obscura/logs.py keeps the HTTP libraries' own loggers at WARNING.
    caplog.set_level(logging.DEBUG, logger="obscura")
    provider = _provider(apns_key, apns.url, tls[1])
    apns.replies.append((500, b'{"reason":"InternalServerError"}'))
    try:
        await provider.send(_target("secret/../token"))
    finally:
        await provider.close()
    assert apns.requests[0].path == "/3/device/secret%2F..%2Ftoken"
    assert "secret" not in caplog.text and "bearer" not in caplog.text.lower()


def test_hosts_and_key_checks(tmp_path):
    assert APNS_HOSTS == {"production": "https://api.push.apple.com",
                          "sandbox": "https://api.sandbox.push.apple.com"}
    with pytest.raises(ValueError, match="not a PEM private key"):
        load_signing_key(b"nope", "k.p8")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="P-256"):
        load_signing_key(p384, "k.p8")
