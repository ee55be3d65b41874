"""UUID objects for the ids the server builds per message.

asyncpg hands ids back as its own C UUID type: a ``uuid.UUID`` subclass that compares, hashes,
sorts and prints like the standard one, and that asyncpg encodes with a copy of its 16 bytes
where a standard ``uuid.UUID`` costs a Python-level ``.bytes`` call per value. Ids made or parsed
per message (message ids, target devices, submission ids, ACKed ids) use the same type, so they
pass through the batched INSERT and the ACK deletes untouched, and building one costs ~0.1 us
instead of ~0.9 us for ``uuid.UUID(bytes=...)``.

Both types are ``uuid.UUID`` instances; code that needs the standard type exactly (orjson
serializes only that one) converts with ``str()``, as it already must for ids read from the
database. asyncpg is a hard dependency (every mode runs on PostgreSQL), so there is no fallback.
"""

from __future__ import annotations

import uuid

from asyncpg.pgproto.pgproto import UUID as uuid_from_bytes  # 16 bytes -> a uuid.UUID; ValueError otherwise

from obscura._speedups import uuid7_bytes

__all__ = ["uuid_from_bytes", "new_message_id"]


def new_message_id() -> uuid.UUID:
    """The next UUIDv7 (monotonic in this process, decisions §4.10) as the fast UUID type."""
    return uuid_from_bytes(uuid7_bytes())
