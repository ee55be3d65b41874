"""Inbox reads of the store (spec §3.4): pages in order after a cursor, the ids a session already
has left out, one statement for the sessions woken in the same tick."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from obscura.store.postgres.messages import MessageRepo
from tests.support.users import register_user
from tests.support.ws import send, submission

_START = (dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), uuid.UUID(int=0))


async def _inbox(app, device_id) -> list[tuple[uuid.UUID, bytes]]:
    async with app.database.acquire() as conn:
        rows = await conn.fetch("SELECT id, content FROM messages WHERE device_id = $1 ORDER BY created_at, id",
                                device_id)
    return [(r["id"], r["content"]) for r in rows]


async def test_reads_leave_out_the_ids_named_as_already_sent(http, app):
    alice = await register_user(http)
    bob, carol, dave = await register_user(http), await register_user(http), await register_user(http)
    for device, count in ((bob, 4), (carol, 3), (dave, 2)):
        for i in range(count):
            await send(http, alice, submission(device.device_id, b"%d" % i))
    bobs, carols, daves = [await _inbox(app, d.device_id) for d in (bob, carol, dave)]
    repo = MessageRepo(app.database)

    # One session alone: the single-device statement.
    page = await repo.fetch_pending(bob.device_id, _START, 10, [bobs[1][0], bobs[2][0]])
    assert [m.content for m in page] == [b"0", b"3"]

    # Three sessions in one tick: one statement, each with its own ids to leave out (the flat
    # array's slices must not leak into each other: carol names none, dave names all of his).
    pages = await asyncio.gather(
        repo.fetch_pending(bob.device_id, _START, 10, [bobs[0][0], bobs[3][0]]),
        repo.fetch_pending(carol.device_id, _START, 10, []),
        repo.fetch_pending(dave.device_id, _START, 10, [m for m, _ in daves]),
        repo.fetch_pending(bob.device_id, None, 2, [carols[0][0]]),  # another device's id: no effect
    )
    assert [[m.content for m in p] for p in pages] == [[b"1", b"2"], [b"0", b"1", b"2"], [], [b"0", b"1"]]
    # The page limit counts what is returned, not what was left out.
    page = await repo.fetch_pending(bob.device_id, _START, 2, [bobs[0][0]])
    assert [m.content for m in page] == [b"1", b"2"]
