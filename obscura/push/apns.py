"""APNs provider: token-based auth (ES256 provider JWT), HTTP/2, a silent background wake-up (issue 6)."""

from __future__ import annotations

import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from obscura.push.base import COLLAPSE_KEY, PushProvider, PushResult, PushTarget

__all__ = ["APNS_HOSTS", "ApnsProvider", "ProviderTokens", "classify_apns_response", "load_signing_key"]

log = logging.getLogger("obscura.push.apns")

APNS_HOSTS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
# Apple rejects provider tokens older than one hour (403 ExpiredProviderToken) and refreshing
# more often than every 20 minutes (429 TooManyProviderTokenUpdates): renew in the middle.
PROVIDER_TOKEN_MAX_AGE_S = 40 * 60
# The wake-up: no alert, no sound, no badge, no sender, no content. "action" mirrors the FCM data
# field, which FCM also places at the top level of the APNs payload it builds.
_PAYLOAD = orjson.dumps({"aps": {"content-available": 1}, "action": "check"})
_PROVIDER_TOKEN_ERRORS = frozenset({"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"})


def load_signing_key(pem: bytes, source: str = "APNs key") -> ec.EllipticCurvePrivateKey:
    """The P-256 private key of an Apple ``.p8`` file (PKCS#8 PEM); fails early with the file named."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: not a PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{source}: APNs keys are P-256 EC keys")
    return key


class ProviderTokens:
    """The ES256 provider JWT (``kid`` = key id, ``iss`` = team id, ``iat``), reused until it is
    ``max_age_s`` old or APNs reports it expired or invalid."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str, *,
                 clock: Callable[[], float] = time.time, max_age_s: float = PROVIDER_TOKEN_MAX_AGE_S) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._max_age_s = max_age_s
        self._token: str | None = None
        self._issued_at = 0.0
        self.issued = 0

    def get(self) -> str:
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._max_age_s:
            iat = int(now)
            self._token = jwt.encode({"iss": self._team_id, "iat": iat}, self._key, algorithm="ES256",
                                     headers={"kid": self._key_id})
            self._issued_at = float(iat)
            self.issued += 1
        return self._token

    def invalidate(self) -> None:
        self._token = None


def classify_apns_response(status: int, body: bytes) -> PushResult:
    """410 or ``Unregistered`` and ``BadDeviceToken``: the token is dead; 429: quota; else retry."""
    if status == 200:
        return PushResult.SUCCESS
    reason = _reason(body)
    if status == 410 or reason in ("Unregistered", "BadDeviceToken"):
        return PushResult.UNREGISTERED
    if status == 429:
        return PushResult.QUOTA_EXCEEDED
    return PushResult.OTHER


def _reason(body: bytes) -> str | None:
    try:
        reason = orjson.loads(body).get("reason")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


class ApnsProvider(PushProvider):
    """POSTs ``/3/device/<token>`` over HTTP/2 (h2 over TLS; prior-knowledge h2c for http://)."""

    name = "apns"

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, key_id: str, team_id: str, topic: str,
                 endpoint: str = APNS_HOSTS["production"], timeout_s: float = 10.0,
                 verify: ssl.SSLContext | bool = True, clock: Callable[[], float] = time.time) -> None:
        # APNs speaks HTTP/2 only, so HTTP/1.1 is switched off (which also makes httpx use
        # prior knowledge on a plain-text endpoint).
        self._client = httpx.AsyncClient(http1=False, http2=True, timeout=httpx.Timeout(timeout_s), verify=verify)
        self.tokens = ProviderTokens(key, key_id, team_id, clock=clock)
        self._base = endpoint.rstrip("/") + "/3/device/"
        self._topic = topic

    def _headers(self) -> dict[str, str]:
        return {
            "authorization": f"bearer {self.tokens.get()}",
            "apns-push-type": "background",
            "apns-priority": "5",  # background pushes must use 5
            "apns-collapse-id": COLLAPSE_KEY,
            "apns-topic": self._topic,
            "content-type": "application/json",
        }

    async def send(self, target: PushTarget) -> PushResult:
        url = self._base + urllib.parse.quote(target.token, safe="")
        try:
            res = await self._client.post(url, content=_PAYLOAD, headers=self._headers())
        except httpx.HTTPError as exc:
            log.warning("APNs send for device %s failed: %s", target.device_id, type(exc).__name__)
            return PushResult.OTHER
        result = classify_apns_response(res.status_code, res.content)
        if result is PushResult.OTHER:
            reason = _reason(res.content)
            if reason in _PROVIDER_TOKEN_ERRORS:
                self.tokens.invalidate()  # a fresh JWT on the retry
            log.warning("APNs answered %d %s for device %s; retried later", res.status_code,
                        _safe(reason), target.device_id)
        return result

    async def close(self) -> None:
        await self._client.aclose()


def _safe(reason: Any) -> str:
    """Apple's reasons are short CamelCase words; anything else is not echoed into our logs."""
    return reason if isinstance(reason, str) and reason.isalnum() and len(reason) <= 64 else "-"
