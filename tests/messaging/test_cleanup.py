"""Message cleanup (TTL and inbox cap), refresh-token cleanup, gateway rate limit (spec §5.4, §6.8;
upstream integration_cleanup and integration_limits)."""

from __future__ import annotations

import uuid

import httpx

from obscura.services.tokens import hash_refresh_token
from obscura.store.postgres.accounts import AccountRepo
from obscura.store.postgres.messages import MessageRepo
from obscura.workers.message_cleanup import MessageCleanup, RefreshTokenCleanup
from tests.fixtures.server import running_app
from tests.support.users import register, register_user
from tests.support.ws import connect, send, submission


async def _count(app, device_id) -> int:
    async with app.database.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", device_id)


async def test_cleanup_prunes_inbox_and_deletes_expired(http, app):
    alice, bob, carol = await register_user(http), await register_user(http), await register_user(http)
    for i in range(3):
        await send(http, alice, submission(bob.device_id, b"b%d" % i))
    await send(http, alice, submission(carol.device_id, b"expired"), submission(carol.device_id, b"active"))
    async with app.database.acquire() as conn:
        await conn.execute("UPDATE messages SET expires_at = now() - interval '1 second' "
                           "WHERE device_id = $1 AND content = 'expired'", carol.device_id)
    cleanup = MessageCleanup(MessageRepo(app.database), app.telemetry, inbox_max=2, interval_s=60)
    assert await cleanup.run_cycle() == (1, 1)
    assert await _count(app, bob.device_id) == 2
    async with app.database.acquire() as conn:
        kept = await conn.fetch("SELECT content FROM messages WHERE device_id = $1 ORDER BY created_at, id",
                                bob.device_id)
        carols = await conn.fetch("SELECT content FROM messages WHERE device_id = $1", carol.device_id)
    assert [r["content"] for r in kept] == [b"b1", b"b2"]  # the newest are kept
    assert [r["content"] for r in carols] == [b"active"]
    assert app.telemetry.value("obscura_messages_overflow_total") == 1


async def test_inbox_cap_keeps_newest_1000_fifo(http, app):
    alice, bob = await register_user(http), await register_user(http)
    for start in range(0, 1005, 100):
        await send(http, alice, *[submission(bob.device_id, b"msg_%d" % i) for i in range(start, min(start + 100, 1005))])
    cleanup = MessageCleanup(MessageRepo(app.database), app.telemetry, inbox_max=1000, interval_s=60)
    await cleanup.run_cycle()
    client = await connect(http, bob)
    try:
        assert (await client.next_envelope()).message == b"msg_5"
    finally:
        await client.close()


async def test_expired_messages_are_not_delivered(http, app):
    alice, bob = await register_user(http), await register_user(http)
    await send(http, alice, submission(bob.device_id, b"old"), submission(bob.device_id, b"new"))
    async with app.database.acquire() as conn:
        await conn.execute("UPDATE messages SET expires_at = now() - interval '1 second' WHERE content = 'old' "
                           "AND device_id = $1", bob.device_id)
    client = await connect(http, bob)
    try:
        assert (await client.next_envelope()).message == b"new"
        assert await client.no_envelope_within(0.3)
    finally:
        await client.close()


async def test_refresh_token_cleanup_deletes_only_expired(http, app):
    user = await register(http)
    old = "expired-refresh-token"
    async with app.database.acquire() as conn:
        await conn.execute("INSERT INTO refresh_tokens (token_hash, user_id, expires_at) "
                           "VALUES ($1, $2, now() - interval '1 day')", hash_refresh_token(old), user.user_id)
    assert await RefreshTokenCleanup(AccountRepo(app.database), interval_s=60).run_cycle() >= 1
    async with app.database.acquire() as conn:
        hashes = {r["token_hash"] for r in await conn.fetch(
            "SELECT token_hash FROM refresh_tokens WHERE user_id = $1", user.user_id)}
    assert hashes == {hash_refresh_token(user.refresh_token)}


async def test_gateway_handshake_is_rate_limited(settings_factory):
    async with running_app(settings_factory(rate_limit_per_second=1, rate_limit_burst=1)) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            first = await http.get("/v1/gateway?token=bad", headers=upgrade)
            second = await http.get("/v1/gateway?token=bad", headers=upgrade)
    assert first.status_code != 429
    assert second.status_code == 429


async def test_cleanup_worker_runs_at_startup(settings_factory):
    """The first cycle runs at start (spec §1.2), so a node comes up with a pruned inbox."""
    async with running_app(settings_factory()) as node:
        import asyncio
        for _ in range(100):
            if node.message_cleanup.worker.cycles >= 1:
                break
            await asyncio.sleep(0.02)
        assert node.message_cleanup.worker.cycles >= 1
