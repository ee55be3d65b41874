"""Access JWTs (HS256, spec §6.8) with a verified-token cache, and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from obscura.errors import Unauthorized

# The key length is checked once at start-up (App logs a warning); PyJWT would warn on every token.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

__all__ = ["Claims", "TokenService", "new_refresh_token", "hash_refresh_token"]

LEEWAY_S = 60


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: uuid.UUID
    device_id: uuid.UUID | None
    exp: int


def new_refresh_token() -> str:
    """32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Only this lower-case hex SHA-256 is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    """Issues and verifies access tokens. Verified tokens are cached until they expire, so the
    hot path (every authenticated request) costs a dict lookup instead of an HMAC and a JSON parse."""

    def __init__(self, secret: str, ttl_s: int, *, clock: Callable[[], float] = time.time,
                 cache_size: int = 50_000) -> None:
        self._key = secret.encode("utf-8")
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: uuid.UUID, device_id: uuid.UUID | None = None) -> tuple[str, int]:
        """(token, exp). Claims in upstream's order: sub, device_id (only if device-scoped), exp."""
        exp = int(self._clock()) + self._ttl_s
        claims: dict[str, object] = {"sub": str(user_id)}
        if device_id is not None:
            claims["device_id"] = str(device_id)
        claims["exp"] = exp
        return jwt.encode(claims, self._key, algorithm="HS256"), exp

    def verify(self, token: str) -> Claims:
        """Claims of a valid token, else Unauthorized (one error for every failure mode)."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp + LEEWAY_S >= now:
                return cached
            del self._cache[token]
            raise Unauthorized()
        try:
            payload = jwt.decode(token, self._key, algorithms=["HS256"], leeway=LEEWAY_S,
                                 options={"require": ["exp"], "verify_exp": False, "verify_aud": False, "verify_iat": False,
                                          "verify_nbf": False})
            exp = payload["exp"]
            if not isinstance(exp, int) or isinstance(exp, bool):
                raise ValueError("exp")
            if exp + LEEWAY_S < now:  # PyJWT reads its own clock; ours is injectable
                raise ValueError("expired")
            user_id = uuid.UUID(payload["sub"])
            raw_device = payload.get("device_id")
            device_id = uuid.UUID(raw_device) if raw_device is not None else None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
            raise Unauthorized() from None
        claims = Claims(user_id, device_id, exp)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def forget_device(self, device_id: uuid.UUID) -> None:
        """Drop cached tokens of a deleted device so the next use is rechecked."""
        for token in [t for t, c in self._cache.items() if c.device_id == device_id]:
            del self._cache[token]
