"""Pending messages in PostgreSQL: batched insert, paged fetch, batched ACK delete, cleanup (spec §5)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg

from obscura.services.messages import PendingMessage, SenderGone
from obscura.store.postgres.pool import Database

__all__ = ["MessageRepo"]

# One statement: keep the rows whose target exists, skip duplicates per sending device (§5.1).
_INSERT = """
INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, created_at, expires_at)
SELECT m.id, $1, $2, m.device_id, m.submission_id, m.content, now(), now() + make_interval(days => $3)
FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::bytea[]) AS m(id, device_id, submission_id, content)
ON CONFLICT (sender_device_id, submission_id) DO NOTHING
RETURNING device_id
"""

_FETCH_FIRST = """
SELECT id, sender_id, sender_device_id, content, created_at FROM messages
WHERE device_id = $1 AND expires_at > now()
ORDER BY created_at, id LIMIT $2
"""

_FETCH_AFTER = """
SELECT id, sender_id, sender_device_id, content, created_at FROM messages
WHERE device_id = $1 AND expires_at > now() AND (created_at, id) > ($2, $3)
ORDER BY created_at, id LIMIT $4
"""

_PRUNE_INBOXES = """
DELETE FROM messages WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY device_id ORDER BY created_at DESC, id DESC) AS rank
        FROM messages
    ) ranked WHERE rank > $1 LIMIT $2
)
"""


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class MessageRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def existing_devices(self, device_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch("SELECT id FROM devices WHERE id = ANY($1::uuid[])", list(device_ids))
        return {r["id"] for r in rows}

    async def enqueue(self, sender_id: uuid.UUID, sender_device_id: uuid.UUID, ttl_days: int,
                      rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bytes]]) -> tuple[set[uuid.UUID], list[uuid.UUID]]:
        """Insert (message id, target device, submission id, content) rows in one transaction.

        Returns (targets that exist, target device of every inserted row). Rows for unknown
        devices and duplicates of an earlier submission by this device are not inserted.
        """
        ids = [r[0] for r in rows]
        targets = [r[1] for r in rows]
        submissions = [r[2] for r in rows]
        contents = [r[3] for r in rows]
        async with self._db.transaction() as conn:
            found = await conn.fetch("SELECT id FROM devices WHERE id = ANY($1::uuid[]) FOR KEY SHARE",
                                     list(set(targets)))
            existing = {r["id"] for r in found}
            keep = [i for i, t in enumerate(targets) if t in existing]
            if not keep:
                return existing, []
            try:
                inserted = await conn.fetch(
                    _INSERT, sender_id, sender_device_id, ttl_days,
                    [ids[i] for i in keep], [targets[i] for i in keep], [submissions[i] for i in keep],
                    [contents[i] for i in keep])
            except asyncpg.ForeignKeyViolationError:
                # Target rows are locked above, so only the sender can be gone (decisions §4.6).
                raise SenderGone() from None
        return existing, [r["device_id"] for r in inserted]

    async def fetch_pending(self, device_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                            limit: int) -> list[PendingMessage]:
        """The next page of a device's inbox in (created_at, id) order after the cursor (§3.4)."""
        async with self._db.acquire() as conn:
            if after is None:
                rows = await conn.fetch(_FETCH_FIRST, device_id, limit)
            else:
                rows = await conn.fetch(_FETCH_AFTER, device_id, after[0], after[1], limit)
        return [PendingMessage(r["id"], r["sender_id"], r["sender_device_id"], r["content"], r["created_at"])
                for r in rows]

    async def delete_acked(self, device_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> int:
        """Delete ACKed rows of this device only: a session cannot delete others' messages (§3.5)."""
        async with self._db.acquire() as conn:
            return _count(await conn.execute(
                "DELETE FROM messages WHERE id = ANY($1::uuid[]) AND device_id = $2", list(message_ids), device_id))

    async def delete_expired(self, limit: int) -> int:
        async with self._db.acquire() as conn:
            return _count(await conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE expires_at < now() LIMIT $1)",
                limit))

    async def prune_inboxes(self, max_per_device: int, limit: int) -> int:
        """Keep each device's newest ``max_per_device`` messages; at most ``limit`` rows per call."""
        async with self._db.acquire() as conn:
            return _count(await conn.execute(_PRUNE_INBOXES, max_per_device, limit))
