"""Cheap whole-node counts for the state poller and the pool saturation gauges (issue 7 §2)."""

from __future__ import annotations

from obscura.store.postgres.pool import Database

__all__ = ["StateRepo", "pool_usage"]

# One round trip; plain counts are fine every few minutes at the sizes one node serves, and every
# message row is pending until its ACK deletes it (spec §5.4), so the table size is the backlog.
_COUNTS = """
SELECT (SELECT count(*) FROM users) AS users,
       (SELECT count(*) FROM devices) AS devices,
       (SELECT count(*) FROM messages) AS pending_messages,
       a.count AS attachments, a.bytes AS attachments_bytes
FROM (SELECT count(*) AS count, coalesce(sum(size_bytes), 0) AS bytes FROM attachments) AS a
"""


class StateRepo:
    """Read-only counts of what the node stores (no per-user data)."""

    def __init__(self, database: Database, *, timeout_s: float = 30.0) -> None:
        self._db = database
        self._timeout_s = timeout_s

    async def counts(self) -> dict[str, int]:
        """``users``, ``devices``, ``pending_messages``, ``attachments`` (rows) and
        ``attachments_bytes`` (their stored sizes; rows from before migration 0005 count as 0)."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(_COUNTS, timeout=self._timeout_s)
        return {key: int(row[key]) for key in ("users", "devices", "pending_messages", "attachments",
                                                  "attachments_bytes")}


def pool_usage(database: Database) -> dict[str, int]:
    """Connections in use, idle and the configured maximum of the asyncpg pool."""
    pool = database.pool
    size, idle = pool.get_size(), pool.get_idle_size() + database.spare_count
    return {"active": size - idle, "idle": idle, "max": pool.get_max_size()}
