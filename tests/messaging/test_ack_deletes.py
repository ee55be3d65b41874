"""ACK deletes (spec §3.5): only the session's own device's rows, committed without waiting for
the WAL flush of that one transaction (the sends' commits stay synchronous)."""

from __future__ import annotations

import asyncio

from obscura.store.postgres.messages import _DELETE_ACKED, MessageRepo
from tests.support.users import register_user
from tests.support.ws import send, submission


async def _contents(app, device_id) -> list[tuple]:
    async with app.database.acquire() as conn:
        return [(r["id"], r["content"]) for r in await conn.fetch(
            "SELECT id, content FROM messages WHERE device_id = $1 ORDER BY created_at, id", device_id)]


async def test_ack_delete_relaxes_the_commit_of_its_own_transaction_only(http, app):
    alice, bob, carol = await register_user(http), await register_user(http), await register_user(http)
    for i in range(3):
        await send(http, alice, submission(bob.device_id, b"b%d" % i))
    await send(http, alice, submission(carol.device_id, b"c0"))
    bobs, carols = await _contents(app, bob.device_id), await _contents(app, carol.device_id)

    repo = MessageRepo(app.database)
    # Bob's session names one of his ids and one of Carol's: only his goes.
    assert await repo.delete_acked(bob.device_id, [bobs[0][0], carols[0][0]]) == 1
    assert await repo.delete_acked(bob.device_id, [bobs[0][0]]) == 0  # already gone: nothing, no error

    async with app.database.acquire() as conn:
        await conn.execute("SET synchronous_commit = on")  # throwaway test clusters run with it off
        try:
            async with conn.transaction():
                assert await conn.fetchval(_DELETE_ACKED, [bobs[1][0]], [bob.device_id]) == bob.device_id
                assert await conn.fetchval("SHOW synchronous_commit") == "off"  # SET LOCAL: this transaction
            assert await conn.fetchval("SHOW synchronous_commit") == "on"  # the next one (a send) is durable
            assert await conn.fetchval(_DELETE_ACKED, [bobs[0][0]], [bob.device_id]) is None  # its own transaction
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        finally:
            await conn.execute("RESET synchronous_commit")
    assert [c for _, c in await _contents(app, bob.device_id)] == [b"b2"]
    assert [c for _, c in await _contents(app, carol.device_id)] == [b"c0"]


async def test_the_deletes_of_one_tick_share_a_statement_and_each_keeps_to_its_device(http, app):
    alice, bob, carol = await register_user(http), await register_user(http), await register_user(http)
    for i in range(2):
        await send(http, alice, submission(bob.device_id, b"b%d" % i))
        await send(http, alice, submission(carol.device_id, b"c%d" % i))
    bobs, carols = await _contents(app, bob.device_id), await _contents(app, carol.device_id)

    repo = MessageRepo(app.database)
    statements: list[int] = []
    run = repo._delete_batch

    async def counted(batch):
        statements.append(len(batch))
        await run(batch)

    repo._delete_batch = counted
    counts = await asyncio.gather(
        repo.delete_acked(bob.device_id, [bobs[0][0], carols[0][0]]),  # Carol's id is not his to delete
        repo.delete_acked(carol.device_id, [carols[1][0]]),
        repo.delete_acked(bob.device_id, [bobs[1][0]]),  # a second session of Bob's device
    )
    assert counts == [1, 1, 1]
    assert statements == [2, 1]  # one statement for the two devices; Bob's second batch after it
    assert await _contents(app, bob.device_id) == []
    assert [c for _, c in await _contents(app, carol.device_id)] == [b"c0"]
