"""Push tokens in PostgreSQL: one per device, upserted, looked up in bulk, deleted by value (spec §6.3, §9)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from obscura.push.base import PushTarget
from obscura.store.postgres.pool import Database

__all__ = ["PgPushTokenRepo"]


class PgPushTokenRepo:
    """The push-token use cases; each is one statement."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def upsert(self, device_id: uuid.UUID, token: str, token_type: str) -> bool:
        """Store the device's token (replacing any older one); False when the device is gone."""
        try:
            async with self._db.acquire() as conn:
                await conn.execute(
                    "INSERT INTO push_tokens (device_id, token, token_type, updated_at) VALUES ($1, $2, $3, now()) "
                    "ON CONFLICT (device_id) DO UPDATE SET token = EXCLUDED.token, "
                    "token_type = EXCLUDED.token_type, updated_at = now()",
                    device_id, token, token_type)
        except asyncpg.ForeignKeyViolationError:
            return False
        return True

    async def targets(self, device_ids: Sequence[uuid.UUID]) -> list[PushTarget]:
        """The token of each of these devices that has one (spec §6.3 step 3: one query)."""
        if not device_ids:
            return []
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT device_id, token, token_type FROM push_tokens WHERE device_id = ANY($1::uuid[])",
                list(device_ids))
        return [PushTarget(r["device_id"], r["token"], r["token_type"]) for r in rows]

    async def delete_tokens(self, tokens: Sequence[str]) -> int:
        """Delete every row holding one of these token values (spec §6.3 step 5); returns the count."""
        if not tokens:
            return 0
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM push_tokens WHERE token = ANY($1::text[])", list(tokens))
        return int(status.rsplit(" ", 1)[1])
