"""obscura.ids: the per-message UUIDs behave as uuid.UUID everywhere and go through asyncpg intact."""

from __future__ import annotations

import os
import uuid

import pytest

from obscura import ids
from obscura._speedups import uuid7_time_ms

def test_ids_are_interchangeable_with_the_standard_type() -> None:
    build = ids.uuid_from_bytes
    raws = [os.urandom(16) for _ in range(200)] + [bytes(16), b"\xff" * 16]
    for raw in raws:
        ours, std = build(raw), uuid.UUID(bytes=raw)
        assert isinstance(ours, uuid.UUID)
        assert ours == std and std == ours and hash(ours) == hash(std)
        assert str(ours) == str(std) and ours.bytes == raw and ours.int == std.int and ours.hex == std.hex
        assert {std: 1}[ours] == 1 and {ours: 1}[std] == 1
    mixed = [build(r) if i % 2 else uuid.UUID(bytes=r) for i, r in enumerate(raws)]
    assert [u.bytes for u in sorted(mixed)] == sorted(raws)  # (created_at, id) order mixes both types


def test_wrong_length_is_a_value_error() -> None:
    for raw in (b"", b"x" * 15, b"x" * 17):
        with pytest.raises(ValueError):
            ids.uuid_from_bytes(raw)


def test_new_message_ids_are_monotonic_uuid7s() -> None:
    made = [ids.new_message_id() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert abs(uuid7_time_ms(made[-1]) - uuid7_time_ms(uuid.UUID(int=made[0].int))) < 60_000


async def test_both_types_round_trip_through_postgresql(db_pool) -> None:  # noqa: ANN001
    raws = [os.urandom(16) for _ in range(50)]
    values = [ids.uuid_from_bytes(r) if i % 2 else uuid.UUID(bytes=r) for i, r in enumerate(raws)]
    async with db_pool.acquire() as conn:
        back = await conn.fetchval("SELECT array_agg(x ORDER BY n) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(x, n)",
                                   values)
        as_text = await conn.fetchval("SELECT $1::uuid::text", values[1])
    assert [u.bytes for u in back] == raws
    assert as_text == str(uuid.UUID(bytes=raws[1]))
