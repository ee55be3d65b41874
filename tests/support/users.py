"""Upstream's test helpers (spec §12): register a user, provision a device, read JWT claims."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field

import httpx

from tests.support.signal_keys import IdentityKey, key_bundle

PASSWORD = "password12345"


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class TestUser:
    username: str
    user_id: uuid.UUID
    user_token: str
    refresh_token: str
    device_id: uuid.UUID | None = None
    token: str | None = None             # device-scoped once a device exists
    device_refresh_token: str | None = None
    identity: IdentityKey = field(default_factory=IdentityKey)

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token or self.user_token)


async def register(http: httpx.AsyncClient, username: str | None = None) -> TestUser:
    """POST /v1/users; the user id comes from the JWT's ``sub`` claim."""
    username = username or f"user_{uuid.uuid4().hex[:12]}"
    res = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert res.status_code == 201, res.text
    body = res.json()
    return TestUser(username, uuid.UUID(jwt_claims(body["token"])["sub"]), body["token"], body["refreshToken"])


async def add_device(http: httpx.AsyncClient, user: TestUser, *, otpk_count: int = 1, name: str | None = None,
                     identity: IdentityKey | None = None) -> TestUser:
    """POST /v1/devices with fresh keys (registration id 123, SPK id 1, OTPK ids 0..n-1)."""
    identity = identity or IdentityKey()
    body = key_bundle(identity, otpk_count=otpk_count)
    if name is not None:
        body["name"] = name
    res = await http.post("/v1/devices", json=body, headers=bearer(user.user_token))
    assert res.status_code == 201, res.text
    data = res.json()
    user.device_id = uuid.UUID(data["deviceId"])
    user.token = data["token"]
    user.device_refresh_token = data["refreshToken"]
    user.identity = identity
    return user


async def register_user(http: httpx.AsyncClient, username: str | None = None, *, otpk_count: int = 1) -> TestUser:
    """Register and provision one device, like upstream's ``register_user``."""
    return await add_device(http, await register(http, username), otpk_count=otpk_count)
