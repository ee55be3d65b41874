"""Slow clients get timeouts; forged, expired, wrong-algorithm and cross-device tokens get 401/403."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.adversity.rawhttp import statuses
from tests.fixtures.server import running_app
from tests.support.users import bearer, register_user


async def _trickle(port: int, head: bytes, drip: bytes, pause_s: float = 0.3) -> bytes:
    """Send ``head``, then ``drip`` one byte at a time until the server answers and closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    got = bytearray()
    try:
        for byte in drip:
            writer.write(bytes([byte]))
            try:
                chunk = await asyncio.wait_for(reader.read(65536), pause_s)
            except TimeoutError:
                continue
            got += chunk
            if not chunk:
                break
        got += await asyncio.wait_for(reader.read(-1), 10)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    return bytes(got)


async def test_slowloris_headers_and_trickling_body_time_out(settings_factory):
    settings = settings_factory(server_header_timeout_secs=1, server_request_timeout_secs=1)
    async with running_app(settings) as node:
        raw = await _trickle(node.port, b"GET /v1/devices HTTP/1.1\r\nX-Slow: ", b"a" * 200)
        assert statuses(raw) == [408]
        raw = await _trickle(node.port, b"POST /v1/sessions HTTP/1.1\r\nContent-Type: application/json\r\n"
                                        b"Content-Length: 500\r\n\r\n", b"{" + b" " * 300)
        assert statuses(raw) == [408]


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_forged_expired_and_wrong_algorithm_tokens_are_401(http, app):
    user = await register_user(http)
    claims = {"sub": str(user.user_id), "device_id": str(user.device_id), "exp": int(time.time()) + 600}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [
        jwt.encode(claims, "wrong-secret", algorithm="HS256"),
        jwt.encode({**claims, "exp": int(time.time()) - 3600}, "test_secret", algorithm="HS256"),  # expired
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        jwt.encode(claims, rsa_key, algorithm="RS256"),
        jwt.encode(claims, "test_secret", algorithm="HS512"),
        jwt.encode({"sub": "not-a-uuid", "exp": claims["exp"]}, "test_secret", algorithm="HS256"),
        jwt.encode({"sub": str(user.user_id)}, "test_secret", algorithm="HS256"),  # no exp
        user.token[:-2] + ("AA" if not user.token.endswith("AA") else "BB"),  # tampered signature
    ]
    for token in forged:
        for method, path in (("GET", "/v1/devices"), ("POST", "/v1/gateway/ticket"), ("GET", "/v1/backup")):
            res = await http.request(method, path, headers=bearer(token))
            assert res.status_code == 401, (token[:20], path, res.text)
    for header in (f"bearer {user.token}", f"Bearer  {user.token}", f"Basic {user.token}", user.token):
        assert (await http.get("/v1/devices", headers={"Authorization": header})).status_code == 401


async def test_cross_device_tokens_never_reach_another_device(http, app):
    alice, mallory = await register_user(http), await register_user(http)
    # Mallory signs a token for Alice's device with her own (valid) user: a valid HMAC is impossible
    # without the secret, so the only cross-device lever is her own token against Alice's ids.
    m = bearer(mallory.token)
    assert (await http.get(f"/v1/devices/{alice.device_id}", headers=m)).status_code == 404
    assert (await http.put(f"/v1/devices/{alice.device_id}", json={"name": "x"}, headers=m)).status_code == 404
    assert (await http.delete(f"/v1/devices/{alice.device_id}", headers=m)).status_code == 404
    upload = await http.post("/v1/backup", content=b"B" * 64, headers={**bearer(alice.token), "If-None-Match": "*"})
    assert upload.status_code in (200, 201, 400, 413), upload.text  # alice's own backup, if the size fits
    res = await http.get("/v1/backup", headers=m)
    assert res.status_code == 404  # mallory sees only her own (empty) slot, never alice's bytes
    # A user-scoped token cannot consume bundles or read a queue: device scope is required (403).
    u = bearer(mallory.user_token)
    assert (await http.get(f"/v1/users/{alice.user_id}", headers=u)).status_code == 403
    assert (await http.post("/v1/gateway/ticket", headers=u)).status_code == 403
    assert (await http.get("/v1/backup", headers=u)).status_code == 403
    # A deleted device's still-valid token is a 401 (decisions §4.6), never the device's data.
    second = await http.post("/v1/sessions", json={"username": alice.username, "password": "password12345",
                                                   "deviceId": str(alice.device_id)})
    token = second.json()["token"]
    assert (await http.delete(f"/v1/devices/{alice.device_id}", headers=bearer(alice.user_token))).status_code == 200
    for method, path in (("POST", "/v1/gateway/ticket"), ("GET", "/v1/backup"), ("GET", f"/v1/users/{mallory.user_id}")):
        assert (await http.request(method, path, headers=bearer(token))).status_code == 401
