"""Several real server processes sharing PostgreSQL and Redis (spec §1.5; upstream
integration_multi_node and integration_full_system; decisions §4.2, §4.5, §4.11)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.fixtures.redis import unique_redis_prefix
from tests.support.signal_keys import IdentityKey, key_bundle
from tests.support.users import bearer, register_user
from tests.support.ws import connect, send, submission


def _node_env(database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "OBSCURA_DATABASE_URL": database_url, "OBSCURA_PUBSUB_URL": redis_url,
        "OBSCURA_NOTIFICATIONS_CHANNEL_PREFIX": prefix, "OBSCURA_NOTIFICATIONS_PUSH_QUEUE_KEY": prefix + "jobs",
        "OBSCURA_AUTH_JWT_SECRET": "multi-node-test-secret-0123456789abcdef",
        "OBSCURA_STORAGE_BACKEND": "memory", "OBSCURA_PUBSUB_MIN_BACKOFF_SECS": "0",
        "OBSCURA_PUBSUB_MAX_BACKOFF_SECS": "1",
        "OBSCURA_RATE_LIMIT_PER_SECOND": "10000", "OBSCURA_RATE_LIMIT_BURST": "10000",
        "OBSCURA_RATE_LIMIT_AUTH_PER_SECOND": "10000", "OBSCURA_RATE_LIMIT_AUTH_BURST": "10000",
        "OBSCURA_DATABASE_MIN_CONNECTIONS": "1",
    }
    env.update(extra)
    return env


@pytest.fixture
def cluster(server_process, database_url, redis_url, tmp_path):
    """Start n nodes sharing this module's database and the test Redis; they stop at teardown."""
    prefix = unique_redis_prefix()

    def start(n: int, redis: str | None = None, **extra: str):
        procs = [server_process(_node_env(database_url, redis or redis_url, prefix,
                                          OBSCURA_DATA_DIR=str(tmp_path / f"n{i}"), **extra))
                 for i in range(n)]
        for proc in procs:
            proc.wait_ready(timeout_s=60)
        return procs

    return start


def _client(proc) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=proc.url, timeout=10)


async def test_message_sent_via_a_delivered_on_b(cluster):
    a, b = cluster(2)
    async with _client(a) as http_a, _client(b) as http_b:
        alice, bob = await register_user(http_a), await register_user(http_a)
        client = await connect(http_b, bob)
        try:
            await send(http_a, alice, submission(bob.device_id, b"cross-node"))
            env = await client.next_envelope(5)
            assert env.message == b"cross-node" and env.sender_device_id == alice.device_id.bytes
        finally:
            await client.close()


async def test_takeover_via_c_closes_sessions_on_a_and_b(cluster):
    a, b, c = cluster(3)
    async with _client(a) as http_a, _client(b) as http_b, _client(c) as http_c:
        alice, bob = await register_user(http_a), await register_user(http_a)
        a1, b1, b2 = await connect(http_a, alice), await connect(http_b, alice), await connect(http_b, alice)
        bob_ws = await connect(http_a, bob)
        res = await http_c.post("/v1/devices/keys", json=key_bundle(IdentityKey(), spk_id=9),
                                headers=bearer(alice.token))
        assert res.status_code == 200
        for ws in (a1, b1, b2):
            await ws.wait_closed(5)
        assert await bob_ws.ping_pong() == b"\x01"
        await bob_ws.close()


async def test_connect_on_b_cancels_push_job_in_shared_queue(cluster, redis_url):
    import redis.asyncio as aioredis
    a, b = cluster(2)
    async with _client(a) as http_a, _client(b) as http_b:
        bob = await register_user(http_a)
        prefix = a.env["OBSCURA_NOTIFICATIONS_PUSH_QUEUE_KEY"]
        r = aioredis.from_url(redis_url)
        try:
            import time
            await r.zadd(prefix, {str(bob.device_id): time.time() + 30})
            client = await connect(http_b, bob)
            for _ in range(100):
                if await r.zscore(prefix, str(bob.device_id)) is None:
                    break
                await asyncio.sleep(0.05)
            assert await r.zscore(prefix, str(bob.device_id)) is None
            await client.close()
        finally:
            await r.aclose()


async def test_redis_restart_loses_no_message(cluster, redis_server_factory):
    redis = redis_server_factory()
    a, b = cluster(2, redis=redis.url)
    async with _client(a) as http_a, _client(b) as http_b:
        alice, bob = await register_user(http_a), await register_user(http_a)
        client = await connect(http_b, bob)
        try:
            await send(http_a, alice, submission(bob.device_id, b"before"))
            assert (await client.next_envelope(5)).message == b"before"
            redis.stop()
            # Sent while Redis is down: committed, but no wake-up can be published.
            await send(http_a, alice, submission(bob.device_id, b"during"))
            redis.start()
            # After the subscriber reconnects, the session re-drains and finds it (decisions §4.2).
            assert (await client.next_envelope(15)).message == b"during"
            await send(http_a, alice, submission(bob.device_id, b"after"))
            assert (await client.next_envelope(10)).message == b"after"
        finally:
            await client.close()


async def test_thousands_of_messages_between_two_processes(cluster):
    """Done-when of issue 4: none lost, none duplicated within a session, order kept per device,
    ACKed rows deleted."""
    a, b = cluster(2)
    async with _client(a) as http_a, _client(b) as http_b:
        senders = [await register_user(http_a) for _ in range(3)]
        recipients = [await register_user(http_a) for _ in range(3)]
        clients = [await connect(http_b if i % 2 else http_a, r) for i, r in enumerate(recipients)]
        per_pair = 200

        async def pump(sender, http):
            for start in range(0, per_pair, 20):
                subs = [submission(r.device_id, b"%s|%04d" % (sender.username.encode(), i))
                        for i in range(start, start + 20) for r in recipients]
                await send(http, sender, *subs)

        await asyncio.gather(*(pump(s, http_a if i % 2 else http_b) for i, s in enumerate(senders)))
        try:
            for client in clients:
                envs = await client.envelopes_for(per_pair * len(senders), timeout_s=20)
                assert len({e.id for e in envs}) == len(envs)
                for sender in senders:
                    mine = [e.message for e in envs if e.sender_id == sender.user_id.bytes]
                    assert mine == [b"%s|%04d" % (sender.username.encode(), i) for i in range(per_pair)]
                client.ack(*[e.id for e in envs])
            import asyncpg
            for _ in range(100):
                conn = await asyncpg.connect(a.env["OBSCURA_DATABASE_URL"])
                left = await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = ANY($1::uuid[])",
                                           [r.device_id for r in recipients])
                await conn.close()
                if left == 0:
                    break
                await asyncio.sleep(0.1)
            assert left == 0
        finally:
            for client in clients:
                await client.close()
