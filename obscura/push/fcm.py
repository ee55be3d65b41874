"""FCM HTTP v1 provider: service-account OAuth2 (RS256 JWT bearer), data-only wake-up, error mapping (spec §6.3)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from obscura.push.base import COLLAPSE_KEY, PushProvider, PushResult, PushTarget

__all__ = ["FcmProvider", "GoogleAccessTokens", "ServiceAccount", "TokenExchangeError", "classify_fcm_response"]

log = logging.getLogger("obscura.push.fcm")

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_LIFETIME_S = 3600
_REFRESH_MARGIN_S = 300  # refresh once fewer than 300 s remain (spec §6.3)
_UNREGISTERED_STATUSES = frozenset({"NOT_FOUND", "UNREGISTERED", "SENDER_ID_MISMATCH"})


class TokenExchangeError(Exception):
    """The OAuth2 token endpoint did not give us an access token (mapped to OTHER)."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The two fields of a Google service-account JSON that the exchange needs."""

    client_email: str
    private_key: Any  # a cryptography RSA private key (never logged)

    def __repr__(self) -> str:
        return f"ServiceAccount(client_email={self.client_email!r})"

    @classmethod
    def from_json(cls, raw: bytes | str, source: str = "service-account JSON") -> ServiceAccount:
        """Parse and check the JSON now, so a broken file fails at start-up, not at the first push."""
        try:
            data = orjson.loads(raw)
            email, pem = data["client_email"], data["private_key"]
            if not isinstance(email, str) or not isinstance(pem, str):
                raise TypeError("client_email and private_key must be strings")
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # Never echo the file: it holds the private key.
            raise ValueError(f"{source}: not a usable service-account JSON ({type(exc).__name__})") from None
        return cls(email, key)

    @classmethod
    def from_file(cls, path: str) -> ServiceAccount:
        with open(path, "rb") as f:
            return cls.from_json(f.read(), path)


class GoogleAccessTokens:
    """A cached OAuth2 access token from the JWT-bearer exchange, refreshed before it expires.

    Double-checked under a lock (spec §6.3), so a burst of pushes with a cold or stale cache
    makes one exchange, not one per push.
    """

    def __init__(self, account: ServiceAccount, token_uri: str, client: httpx.AsyncClient, *,
                 clock: Callable[[], float] = time.time, refresh_margin_s: float = _REFRESH_MARGIN_S) -> None:
        self._account = account
        self._token_uri = token_uri
        self._client = client
        self._clock = clock
        self._margin_s = refresh_margin_s
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.exchanges = 0

    def _fresh(self) -> str | None:
        if self._token is not None and self._expires_at - self._clock() > self._margin_s:
            return self._token
        return None

    async def get(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()
            if token is None:
                token = await self._exchange()
            return token

    def invalidate(self) -> None:
        """Forget the cached token (FCM said 401: it may have been revoked)."""
        self._token = None

    async def _exchange(self) -> str:
        now = int(self._clock())
        claims = {"iss": self._account.client_email, "scope": FCM_SCOPE, "aud": self._token_uri,
                  "iat": now, "exp": now + _ASSERTION_LIFETIME_S}
        assertion = jwt.encode(claims, self._account.private_key, algorithm="RS256")
        self.exchanges += 1
        try:
            res = await self._client.post(self._token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion})
        except httpx.HTTPError as exc:
            raise TokenExchangeError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if res.status_code != 200:
            raise TokenExchangeError(f"token endpoint answered {res.status_code}")
        try:
            body = orjson.loads(res.content)
            token, expires_in = body["access_token"], body["expires_in"]
            if not isinstance(token, str) or not token or not isinstance(expires_in, (int, float)):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise TokenExchangeError("token endpoint answered an unexpected body") from None
        self._token, self._expires_at = token, now + float(expires_in)
        return token


def classify_fcm_response(status: int, body: bytes) -> PushResult:
    """Spec §6.3's FCM error mapping."""
    if 200 <= status < 300:
        return PushResult.SUCCESS
    if status == 429:
        return PushResult.QUOTA_EXCEEDED
    if status in (403, 404):
        return PushResult.UNREGISTERED
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return PushResult.OTHER
    if not isinstance(error, dict):
        return PushResult.OTHER
    if error.get("status") in _UNREGISTERED_STATUSES:
        return PushResult.UNREGISTERED
    details = error.get("details")
    details = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    if any(d.get("errorCode") == "UNREGISTERED" for d in details):
        return PushResult.UNREGISTERED
    if status == 400 and error.get("status") == "INVALID_ARGUMENT":
        for d in details:
            violations = d.get("fieldViolations")
            if isinstance(violations, list) and any(
                    isinstance(v, dict) and v.get("field") == "message.token" for v in violations):
                return PushResult.UNREGISTERED
    return PushResult.OTHER


def fcm_message(token: str, ttl_s: int) -> dict[str, Any]:
    """The data-only wake-up of spec §6.3: no notification block, no sender, no content."""
    return {"message": {
        "token": token,
        "data": {"action": "check"},
        "android": {"collapseKey": COLLAPSE_KEY, "priority": "HIGH", "ttl": f"{ttl_s}s"},
        "apns": {"headers": {"apns-push-type": "background", "apns-priority": "5", "apns-collapse-id": COLLAPSE_KEY},
                 "payload": {"aps": {"content-available": 1}}},
    }}


class FcmProvider(PushProvider):
    """Sends through ``<endpoint>/v1/projects/<project>/messages:send`` with a cached access token."""

    name = "fcm"

    def __init__(self, account: ServiceAccount, project_id: str, *, ttl_s: int,
                 endpoint: str = "https://fcm.googleapis.com", token_uri: str = "https://oauth2.googleapis.com/token",
                 timeout_s: float = 10.0, max_connections: int = 100,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                         limits=httpx.Limits(max_connections=max_connections))
        self.tokens = GoogleAccessTokens(account, token_uri, self._client, clock=clock)
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._ttl_s = ttl_s

    async def send(self, target: PushTarget) -> PushResult:
        try:
            access = await self.tokens.get()
        except TokenExchangeError as exc:
            log.warning("FCM access token unavailable (%s); device %s retried later", exc, target.device_id)
            return PushResult.OTHER
        body = orjson.dumps(fcm_message(target.token, self._ttl_s))
        try:
            res = await self._client.post(self._url, content=body, headers={
                "Authorization": f"Bearer {access}", "Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            log.warning("FCM send for device %s failed: %s", target.device_id, type(exc).__name__)
            return PushResult.OTHER
        if res.status_code == 401:
            self.tokens.invalidate()
        result = classify_fcm_response(res.status_code, res.content)
        if result is PushResult.OTHER:
            log.warning("FCM answered %d for device %s; retried later", res.status_code, target.device_id)
        return result

    async def close(self) -> None:
        await self._client.aclose()
