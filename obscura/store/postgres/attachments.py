"""Attachment rows in PostgreSQL: id, expiry and size, no owner (spec §6.1, §9; size: migration 0005)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence

from obscura.store.postgres.pool import Database

__all__ = ["AttachmentRepo"]


class AttachmentRepo:
    """Use cases of the attachment service and its cleanup worker; each is one statement."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, attachment_id: uuid.UUID, ttl_days: int, size_bytes: int) -> datetime.datetime:
        """Record a new attachment of ``size_bytes`` expiring ``ttl_days`` from now; returns ``expires_at``."""
        async with self._db.acquire() as conn:
            return await conn.fetchval(
                "INSERT INTO attachments (id, expires_at, size_bytes) "
                "VALUES ($1, now() + make_interval(days => $2), $3) RETURNING expires_at",
                attachment_id, ttl_days, size_bytes)

    async def is_live(self, attachment_id: uuid.UUID) -> bool:
        """True when the row exists and has not expired (``expires_at < now`` is expired)."""
        async with self._db.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM attachments WHERE id = $1 AND expires_at >= now())",
                attachment_id))

    async def expired_ids(self, limit: int) -> list[uuid.UUID]:
        """Up to ``limit`` expired attachments, oldest first."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id FROM attachments WHERE expires_at < now() ORDER BY expires_at LIMIT $1", limit)
        return [r["id"] for r in rows]

    async def delete(self, attachment_ids: Sequence[uuid.UUID]) -> int:
        """Delete these rows; returns how many existed."""
        if not attachment_ids:
            return 0
        async with self._db.acquire() as conn:
            status = await conn.execute("DELETE FROM attachments WHERE id = ANY($1::uuid[])", list(attachment_ids))
        return int(status.rsplit(" ", 1)[1])
