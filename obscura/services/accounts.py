"""Registration, login, refresh-token rotation and logout (spec §2.2-2.5, §6.8)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from obscura._speedups import uuid7
from obscura.errors import BadRequest, Conflict, Unauthorized
from obscura.services.passwords import PasswordService
from obscura.services.tokens import TokenService, hash_refresh_token, new_refresh_token
from obscura.telemetry import Telemetry, traced

__all__ = ["AccountService", "IssuedSession", "SessionIssuer", "AccountStore", "UsernameTakenError"]

_USERNAME = re.compile(r"[a-zA-Z0-9_]{3,50}")
MIN_PASSWORD_BYTES = 12


class UsernameTakenError(Exception):
    """Raised by the store when the username exists."""


class AccountStore(Protocol):
    async def create_user_with_session(self, user_id: uuid.UUID, username: str, password_hash: str,
                                       refresh_hash: str, refresh_ttl_days: int) -> None: ...
    async def find_login(self, username: str, device_id: uuid.UUID | None) -> tuple[uuid.UUID, str, bool] | None: ...
    async def add_refresh_token(self, refresh_hash: str, user_id: uuid.UUID, device_id: uuid.UUID | None,
                                ttl_days: int) -> None: ...
    async def rotate_refresh_token(self, old_hash: str, new_hash: str,
                                   ttl_days: int) -> tuple[uuid.UUID, uuid.UUID | None] | None: ...
    async def delete_refresh_token(self, token_hash: str, user_id: uuid.UUID) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """An access JWT plus an opaque refresh token; only ``refresh_hash`` is ever stored."""

    token: str
    refresh_token: str
    refresh_hash: str
    expires_at: int
    device_id: uuid.UUID | None

    def as_json(self) -> dict[str, Any]:
        """AuthResponse: ``deviceId`` only for device-scoped sessions (spec §2.3)."""
        body: dict[str, Any] = {"token": self.token, "refreshToken": self.refresh_token, "expiresAt": self.expires_at}
        if self.device_id is not None:
            body["deviceId"] = str(self.device_id)
        return body


class SessionIssuer:
    """Mints sessions; the caller stores ``refresh_hash`` in the same transaction as its other work."""

    def __init__(self, tokens: TokenService, refresh_ttl_days: int) -> None:
        self._tokens = tokens
        self.refresh_ttl_days = refresh_ttl_days

    def new(self, user_id: uuid.UUID, device_id: uuid.UUID | None = None,
            refresh: str | None = None) -> IssuedSession:
        token, exp = self._tokens.issue(user_id, device_id)
        refresh = refresh or new_refresh_token()
        return IssuedSession(token, refresh, hash_refresh_token(refresh), exp, device_id)


class AccountService:
    def __init__(self, store: AccountStore, passwords: PasswordService, sessions: SessionIssuer,
                 telemetry: Telemetry) -> None:
        self._telemetry = telemetry  # for @traced
        self._store = store
        self._passwords = passwords
        self._sessions = sessions
        self._registrations = telemetry.counter("obscura_registrations_total", "successful registrations")
        self._logins = telemetry.counter("obscura_logins_total", "successful logins")
        self._refreshes = telemetry.counter("obscura_token_refreshes_total", "successful refresh rotations")
        self._logouts = telemetry.counter("obscura_logouts_total", "logouts")

    @traced("accounts.register")
    async def register(self, username: str, password: str) -> IssuedSession:
        """Validation order and messages of spec §2.2; the username is stored lower-cased."""
        if not username.strip():
            raise BadRequest("Username cannot be empty")
        if not _USERNAME.fullmatch(username):
            raise BadRequest("Username must be between 3 and 50 characters and can only contain "
                             "letters, numbers, and underscores")
        if len(password.encode("utf-8", "surrogatepass")) < MIN_PASSWORD_BYTES:
            raise BadRequest("Password must be at least 12 characters long")
        password_hash = await self._passwords.hash(password)
        user_id = uuid7()
        session = self._sessions.new(user_id)
        try:
            await self._store.create_user_with_session(user_id, username.lower(), password_hash,
                                                       session.refresh_hash, self._sessions.refresh_ttl_days)
        except UsernameTakenError:
            raise Conflict("Username already exists") from None
        self._registrations.add(1)
        return session

    @traced("accounts.login")
    async def login(self, username: str, password: str, device_id_text: str | None) -> IssuedSession:
        """Device-scoped when ``deviceId`` names one of the user's devices, else user-scoped (§2.3)."""
        device_id = None
        if device_id_text is not None:
            try:
                device_id = uuid.UUID(device_id_text)
            except ValueError:
                raise BadRequest("Invalid device_id") from None
        # Only names register() accepts can exist; anything else (a NUL, which PostgreSQL text
        # cannot hold, would be a 500) is an unknown user without a query.
        known = _USERNAME.fullmatch(username) is not None
        found = await self._store.find_login(username.lower(), device_id) if known else None
        # Verify against a dummy hash when the user is unknown: same cost, no username oracle.
        if not await self._passwords.verify(found[1] if found else None, password) or found is None:
            raise Unauthorized()
        user_id, _, owns_device = found
        session = self._sessions.new(user_id, device_id if owns_device else None)
        await self._store.add_refresh_token(session.refresh_hash, user_id, session.device_id,
                                            self._sessions.refresh_ttl_days)
        self._logins.add(1)
        return session

    @traced("accounts.refresh")
    async def refresh(self, refresh_token: str) -> IssuedSession:
        """Rotate: the old token dies, a new one with the same scope is issued (§2.4)."""
        fresh = new_refresh_token()
        rotated = await self._store.rotate_refresh_token(hash_refresh_token(refresh_token),
                                                         hash_refresh_token(fresh), self._sessions.refresh_ttl_days)
        if rotated is None:
            raise Unauthorized()
        user_id, device_id = rotated
        self._refreshes.add(1)
        return self._sessions.new(user_id, device_id, fresh)

    @traced("accounts.logout")
    async def logout(self, user_id: uuid.UUID, refresh_token: str) -> None:
        """Always succeeds, even when nothing matched (§2.5)."""
        await self._store.delete_refresh_token(hash_refresh_token(refresh_token), user_id)
        self._logouts.add(1)
