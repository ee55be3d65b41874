"""Users and refresh tokens in PostgreSQL (spec §2.2-2.5, §6.8, §9)."""

from __future__ import annotations

import uuid

import asyncpg

from obscura.services.accounts import UsernameTakenError
from obscura.store.postgres.pool import Database

__all__ = ["AccountRepo"]


_ROTATE = """
WITH old AS (
    DELETE FROM refresh_tokens WHERE token_hash = $1
    RETURNING user_id, device_id, expires_at
), fresh AS (
    INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at)
    SELECT $2, user_id, device_id, now() + make_interval(days => $3)
    FROM old WHERE expires_at > now()
    RETURNING user_id, device_id
)
SELECT user_id, device_id FROM fresh
"""


class AccountRepo:
    """Use cases of the accounts service; each method is one statement or one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_user_with_session(self, user_id: uuid.UUID, username: str, password_hash: str,
                                       refresh_hash: str, refresh_ttl_days: int) -> None:
        """Insert the user and its first (user-scoped) refresh token in one transaction."""
        async with self._db.transaction() as conn:
            try:
                await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)",
                                   user_id, username, password_hash)
            except asyncpg.UniqueViolationError:
                raise UsernameTakenError(username) from None
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at) "
                "VALUES ($1, $2, NULL, now() + make_interval(days => $3))",
                refresh_hash, user_id, refresh_ttl_days)

    async def find_login(self, username: str, device_id: uuid.UUID | None) -> tuple[uuid.UUID, str, bool] | None:
        """(user id, password hash, whether ``device_id`` is one of the user's devices), or None."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT u.id, u.password_hash, "
                "EXISTS (SELECT 1 FROM devices d WHERE d.id = $2 AND d.user_id = u.id) AS owns "
                "FROM users u WHERE u.username = $1", username, device_id)
        return None if row is None else (row["id"], row["password_hash"], row["owns"])

    async def add_refresh_token(self, refresh_hash: str, user_id: uuid.UUID, device_id: uuid.UUID | None,
                                ttl_days: int) -> None:
        async with self._db.acquire() as conn:
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at) "
                "VALUES ($1, $2, $3, now() + make_interval(days => $4))",
                refresh_hash, user_id, device_id, ttl_days)

    async def rotate_refresh_token(self, old_hash: str, new_hash: str,
                                   ttl_days: int) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        """Replace a live token by a new one in one statement; an expired one is only deleted."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_ROTATE, old_hash, new_hash, ttl_days)
        return None if row is None else (row["user_id"], row["device_id"])

    async def delete_refresh_token(self, token_hash: str, user_id: uuid.UUID) -> None:
        async with self._db.acquire() as conn:
            await conn.execute("DELETE FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
                               token_hash, user_id)

    async def delete_expired_refresh_tokens(self, limit: int) -> int:
        """Delete at most ``limit`` expired tokens (bounded work per cleanup cycle)."""
        async with self._db.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM refresh_tokens WHERE token_hash IN ("
                "SELECT token_hash FROM refresh_tokens WHERE expires_at < now() LIMIT $1)", limit)
        return int(status.rsplit(" ", 1)[-1])
