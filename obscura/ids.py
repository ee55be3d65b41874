"""UUID objects for the ids the server builds per message.

asyncpg hands ids back as its own C UUID type: a ``uuid.UUID`` subclass that compares, hashes,
sorts and prints like the standard one, and that asyncpg encodes with a copy of its 16 bytes
where a standard ``uuid.UUID`` costs a Python-level ``.bytes`` call per value. Ids made or parsed
per message (message ids, target devices, submission ids, ACKed ids) use the same type, so they
pass through the batched INSERT and the ACK deletes untouched, and building one costs ~0.1 us
instead of ~0.9 us for ``uuid.UUID(bytes=...)``.

Both types are ``uuid.UUID`` instances; code that needs the standard type exactly (orjson
serializes only that one) converts with ``str()``, as it already must for ids read from the
database. Without asyncpg's type (another asyncpg build) the standard type is built without
its validating ``__init__``, which is the next cheapest.
"""

from __future__ import annotations

import uuid

from obscura._speedups import uuid7_bytes

__all__ = ["uuid_from_bytes", "new_message_id"]

_UUID = uuid.UUID
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_new_object = object.__new__
_set_slot = object.__setattr__


def _standard_from_bytes(raw: bytes) -> uuid.UUID:
    if len(raw) != 16:
        raise ValueError("bytes is not a 16-char string")
    result = _new_object(_UUID)
    _set_slot(result, "int", int.from_bytes(raw, "big"))
    _set_slot(result, "is_safe", _SAFE_UNKNOWN)
    return result


try:
    from asyncpg.pgproto.pgproto import UUID as _FastUUID
except ImportError:  # pragma: no cover - asyncpg always ships it today
    _FastUUID = None

uuid_from_bytes = _FastUUID if _FastUUID is not None else _standard_from_bytes


def new_message_id() -> uuid.UUID:
    """The next UUIDv7 (monotonic in this process, decisions §4.10) as the fast UUID type."""
    return uuid_from_bytes(uuid7_bytes())
