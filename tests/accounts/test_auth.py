"""Registration, login, refresh rotation, logout, JWTs and argon2 (spec §2.2-2.5, §6.8; upstream
integration_auth and integration_registration)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import httpx
import jwt
import pytest
from argon2 import PasswordHasher

from obscura.errors import Unauthorized
from obscura.services.passwords import PasswordService
from obscura.services.tokens import TokenService, hash_refresh_token, new_refresh_token
from tests.fixtures.server import running_app
from tests.support.users import PASSWORD, bearer, jwt_claims, register, register_user


def _name() -> str:
    return f"u_{uuid.uuid4().hex[:10]}"


async def test_register_returns_user_scoped_session(http, app):
    res = await http.post("/v1/users", json={"username": _name(), "password": PASSWORD})
    assert res.status_code == 201
    body = res.json()
    assert set(body) == {"token", "refreshToken", "expiresAt"}
    claims = jwt_claims(body["token"])
    assert list(claims) == ["sub", "exp"]
    assert body["expiresAt"] == claims["exp"]
    assert len(body["refreshToken"]) == 43 and "=" not in body["refreshToken"]
    # Only the SHA-256 hex of the refresh token is stored.
    async with app.database.acquire() as conn:
        stored = await conn.fetchval("SELECT token_hash FROM refresh_tokens WHERE user_id = $1",
                                     uuid.UUID(claims["sub"]))
    assert stored == hashlib.sha256(body["refreshToken"].encode()).hexdigest()
    assert jwt.get_unverified_header(body["token"]) == {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize("username,password,message", [
    ("   ", PASSWORD, "Username cannot be empty"),
    ("ab", PASSWORD, "Username must be between 3 and 50 characters and can only contain letters, numbers, and underscores"),
    ("bad-name!", PASSWORD, "Username must be between 3 and 50 characters and can only contain letters, numbers, and underscores"),
    ("x" * 51, PASSWORD, "Username must be between 3 and 50 characters and can only contain letters, numbers, and underscores"),
    ("valid_name", "too_short", "Password must be at least 12 characters long"),
    ("valid_name", "a" * 11, "Password must be at least 12 characters long"),
])
async def test_registration_validation_messages(http, username, password, message):
    res = await http.post("/v1/users", json={"username": username, "password": password})
    assert res.status_code == 400
    assert res.json() == {"error": message}


async def test_password_length_counts_bytes_and_extra_fields_are_ignored(http):
    res = await http.post("/v1/users", json={"username": _name(), "password": "a" * 12,
                                             "identityKey": "ignored", "oneTimePreKeys": []})
    assert res.status_code == 201
    # 6 two-byte characters are 12 bytes: accepted, like upstream (UTF-8 byte length).
    res = await http.post("/v1/users", json={"username": _name(), "password": "é" * 6})
    assert res.status_code == 201


async def test_username_is_case_insensitive_and_unique(http):
    name = _name()
    assert (await http.post("/v1/users", json={"username": name.upper(), "password": PASSWORD})).status_code == 201
    res = await http.post("/v1/users", json={"username": name, "password": PASSWORD})
    assert res.status_code == 409
    assert res.json() == {"error": "Username already exists"}
    login = await http.post("/v1/sessions", json={"username": name.upper(), "password": PASSWORD})
    assert login.status_code == 200


async def test_json_framework_errors(http):
    res = await http.post("/v1/users", content=b'{"username":"abc","password":"x"}',
                          headers={"content-type": "text/plain"})
    assert res.status_code == 415 and "error" in res.json()
    res = await http.post("/v1/users", content=b'{"username":', headers={"content-type": "application/json"})
    assert res.status_code == 400 and res.json()["error"].startswith("Failed to parse the request body as JSON")
    res = await http.post("/v1/users", json={"username": "abc"})
    assert res.status_code == 422 and "missing field `password`" in res.json()["error"]
    res = await http.post("/v1/users", json={"username": 5, "password": PASSWORD})
    assert res.status_code == 422
    res = await http.post("/v1/users", json=[1, 2])
    assert res.status_code == 422


async def test_login_wrong_password_and_unknown_user_are_401(http):
    user = await register(http)
    for body in ({"username": user.username, "password": "wrong-password-1"},
                 {"username": "nobody_" + uuid.uuid4().hex[:8], "password": PASSWORD}):
        res = await http.post("/v1/sessions", json=body)
        assert res.status_code == 401
        assert res.json() == {"error": "Unauthorized"}


async def test_login_invalid_device_id_is_400_before_credentials(http):
    res = await http.post("/v1/sessions", json={"username": "whoever", "password": "x", "deviceId": "not-a-uuid"})
    assert res.status_code == 400
    assert res.json() == {"error": "Invalid device_id"}


async def test_login_with_device_id(http):
    user = await register_user(http)
    res = await http.post("/v1/sessions", json={"username": user.username, "password": PASSWORD})
    assert res.status_code == 200 and "deviceId" not in res.json()
    res = await http.post("/v1/sessions", json={"username": user.username, "password": PASSWORD,
                                                "deviceId": str(user.device_id)})
    body = res.json()
    assert res.status_code == 200 and body["deviceId"] == str(user.device_id)
    assert jwt_claims(body["token"])["device_id"] == str(user.device_id)
    assert list(jwt_claims(body["token"])) == ["sub", "device_id", "exp"]
    fetch = await http.get(f"/v1/users/{user.user_id}", headers=bearer(body["token"]))
    assert fetch.status_code == 200
    # A foreign or unknown device id silently gives a user-scoped session (spec §13 item 19).
    other = await register_user(http)
    res = await http.post("/v1/sessions", json={"username": user.username, "password": PASSWORD,
                                                "deviceId": str(other.device_id)})
    assert res.status_code == 200 and "deviceId" not in res.json()


async def test_refresh_token_flow(http):
    user = await register(http)
    res = await http.post("/v1/sessions/refresh", json={"refreshToken": user.refresh_token})
    assert res.status_code == 200
    body = res.json()
    assert body["refreshToken"] != user.refresh_token and body["token"]
    again = await http.post("/v1/sessions/refresh", json={"refreshToken": user.refresh_token})
    assert again.status_code == 401 and again.json() == {"error": "Unauthorized"}
    # The new one works, and keeps the scope.
    third = await http.post("/v1/sessions/refresh", json={"refreshToken": body["refreshToken"]})
    assert third.status_code == 200 and "deviceId" not in third.json()


async def test_refresh_keeps_device_scope(http):
    user = await register_user(http)
    res = await http.post("/v1/sessions/refresh", json={"refreshToken": user.device_refresh_token})
    assert res.status_code == 200
    assert res.json()["deviceId"] == str(user.device_id)
    assert jwt_claims(res.json()["token"])["device_id"] == str(user.device_id)


async def test_logout_revokes_refresh_token(http):
    user = await register(http)
    res = await http.request("DELETE", "/v1/sessions", json={"refreshToken": user.refresh_token},
                             headers=bearer(user.user_token))
    assert res.status_code == 200 and res.content == b"" and "content-type" not in res.headers
    res = await http.post("/v1/sessions/refresh", json={"refreshToken": user.refresh_token})
    assert res.status_code == 401
    # Logging out with an unknown token is still 200.
    res = await http.request("DELETE", "/v1/sessions", json={"refreshToken": "nope"}, headers=bearer(user.user_token))
    assert res.status_code == 200


async def test_logout_cannot_revoke_another_users_token(http):
    alice, bob = await register(http), await register(http)
    await http.request("DELETE", "/v1/sessions", json={"refreshToken": bob.refresh_token},
                       headers=bearer(alice.user_token))
    res = await http.post("/v1/sessions/refresh", json={"refreshToken": bob.refresh_token})
    assert res.status_code == 200


async def test_refresh_token_expiration(settings_factory):
    async with running_app(settings_factory(auth_refresh_token_ttl_days=0)) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            user = await register(http)
            await asyncio.sleep(1)
            res = await http.post("/v1/sessions/refresh", json={"refreshToken": user.refresh_token})
            assert res.status_code == 401
            async with node.database.acquire() as conn:
                left = await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = $1", user.user_id)
            assert left == 0  # the expired token is deleted as a side effect


@pytest.mark.parametrize("header", [None, "Bearer invalid-token", "NotBearer x", "bearer x", "Bearer  x",
                                    "Bearer é"])
async def test_bad_authorization_headers_are_401(http, header):
    headers = {} if header is None else {"Authorization": header.encode("utf-8")}
    res = await http.request("DELETE", "/v1/sessions", json={"refreshToken": "x"}, headers=headers)
    assert res.status_code == 401 and res.json() == {"error": "Unauthorized"}


# -- JWTs and passwords, as units --------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_jwt_expiry_and_leeway():
    clock = Clock()
    svc = TokenService("k", 900, clock=clock)
    user, device = uuid.uuid4(), uuid.uuid4()
    token, exp = svc.issue(user, device)
    assert svc.verify(token).device_id == device
    clock.now = exp + 59           # within the 60 s leeway (cached path)
    assert svc.verify(token).user_id == user
    fresh = TokenService("k", 900, clock=clock)
    assert fresh.verify(token).user_id == user   # uncached path, same rule
    clock.now = exp + 61
    for s in (svc, fresh):
        with pytest.raises(Unauthorized):
            s.verify(token)


def test_jwt_rejections():
    svc = TokenService("secret", 900)
    good_claims = {"sub": str(uuid.uuid4()), "exp": int(time.time()) + 100}
    for token in (
        jwt.encode(good_claims, "other-secret", algorithm="HS256"),
        jwt.encode({**good_claims, "sub": "not-a-uuid"}, "secret", algorithm="HS256"),
        jwt.encode({"sub": good_claims["sub"]}, "secret", algorithm="HS256"),
        jwt.encode(good_claims, "secret", algorithm="HS512"),
        jwt.encode(good_claims, None, algorithm="none"),
        "a.b.c", "", "x" * 5000,
    ):
        with pytest.raises(Unauthorized):
            svc.verify(token)


def test_refresh_token_format():
    token = new_refresh_token()
    assert len(token) == 43 and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).hexdigest()


UPSTREAM_PHC = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)


async def test_argon2_interoperates_with_upstream_phc_strings():
    svc = PasswordService()
    ours = await svc.hash("correct horse battery")
    assert ours.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert UPSTREAM_PHC.verify(ours, "correct horse battery")
    theirs = UPSTREAM_PHC.hash("correct horse battery")
    assert await svc.verify(theirs, "correct horse battery")
    assert not await svc.verify(theirs, "wrong")
    assert not await svc.verify("not-a-phc-string", "x")
    assert not await svc.verify(None, "x")
