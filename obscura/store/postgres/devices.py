"""Devices in PostgreSQL: capped creation, listing, rename, cascading delete (spec §2.6-2.7, §9)."""

from __future__ import annotations

import contextlib
import uuid

import asyncpg

from obscura.domain.devices import Device
from obscura.store.postgres.pool import Database

__all__ = ["PgDeviceRepo"]

_COLUMNS = "id, name, created_at"


def _device(row: asyncpg.Record) -> Device:
    return Device(row["id"], row["name"], row["created_at"])


class PgDeviceRepo:
    """SQL for the device use cases. ``*_txn`` methods run inside ``transaction()``'s connection."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def transaction(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return self._db.transaction()

    # -- creation (one transaction with the keys and the session, spec §2.6) --------------------
    async def lock_user_txn(self, conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
        """Serialise device creation per account (decisions §4.4); False if the user is gone.

        NO KEY UPDATE, not UPDATE: it conflicts with itself but not with the KEY SHARE locks that
        foreign-key checks take, so logins and sends for the account are not blocked.
        """
        return await conn.fetchval("SELECT TRUE FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id) is True

    async def count_devices_txn(self, conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
        return await conn.fetchval("SELECT count(*) FROM devices WHERE user_id = $1", user_id)

    async def insert_device_txn(self, conn: asyncpg.Connection, device_id: uuid.UUID, user_id: uuid.UUID,
                                name: str | None) -> None:
        await conn.execute("INSERT INTO devices (id, user_id, name) VALUES ($1, $2, $3)", device_id, user_id, name)

    async def insert_refresh_token_txn(self, conn: asyncpg.Connection, token_hash: str, user_id: uuid.UUID,
                                       device_id: uuid.UUID | None, ttl_days: int) -> None:
        """A refresh-token row expiring ``ttl_days`` from now (spec §2.4)."""
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_at) "
            "VALUES ($1, $2, $3, now() + make_interval(days => $4))",
            token_hash, user_id, device_id, ttl_days)

    # -- reads and updates (each its own statement) ----------------------------------------------
    async def list_devices(self, user_id: uuid.UUID) -> list[Device]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id", user_id)
        return [_device(r) for r in rows]

    async def get_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> Device | None:
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM devices WHERE id = $1 AND user_id = $2", device_id, user_id)
        return None if row is None else _device(row)

    async def rename_device(self, user_id: uuid.UUID, device_id: uuid.UUID, name: str | None) -> Device | None:
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"UPDATE devices SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING {_COLUMNS}",
                device_id, user_id, name)
        return None if row is None else _device(row)

    async def delete_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> bool:
        """Delete one of the user's devices; the foreign keys cascade everything it owns (spec §2.7)."""
        async with self._db.acquire() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM devices WHERE id = $1 AND user_id = $2 RETURNING TRUE", device_id, user_id)
        return deleted is True

    async def device_exists(self, device_id: uuid.UUID) -> bool:
        async with self._db.acquire() as conn:
            return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", device_id)
