"""Faults between the node and PostgreSQL or Redis: errors while the link is bad, recovery after,
and no accepted (200) message lost (issue 9; decisions §4.2, §4.11)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid

import httpx

from obscura._proto import obscura_pb2 as pb
from tests.adversity.faultproxy import FaultProxy
from tests.fixtures.server import running_app
from tests.support.users import bearer, register_user
from tests.support.ws import connect, submission


async def _post(http: httpx.AsyncClient, sender, recipient, text: bytes) -> int:
    body = pb.SendMessageRequest(messages=[submission(recipient.device_id, text)]).SerializeToString()
    try:
        res = await http.post("/v1/messages", content=body, timeout=15,
                              headers={**bearer(sender.token), "Idempotency-Key": str(uuid.uuid4())})
    except httpx.HTTPError:
        return 0
    # A stalled dependency hits the route timeout (408, OBSCURA_SERVER_REQUEST_TIMEOUT_SECS); a broken
    # one is a 5xx. Never a misleading 4xx.
    assert res.status_code in (200, 408) or res.status_code >= 500, res.text
    return res.status_code


async def _receive_all(ws, accepted: list[bytes]) -> None:
    """Read until every accepted message arrived. A request that timed out (408) may still have
    committed and arrive too: that is at-least-once, and the client's idempotency key dedupes it."""
    got: set[bytes] = set()
    while not set(accepted) <= got:
        got.add((await ws.next_envelope(timeout_s=30)).message)


async def _eventually_ok(http, sender, recipient, text: bytes, accepted: list[bytes]) -> None:
    for _ in range(100):
        if await _post(http, sender, recipient, text) == 200:
            accepted.append(text)
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the node did not recover after the link healed")


async def _postgres_proxy(database_url: str) -> FaultProxy:
    """A proxy to the test database, whether it listens on TCP or (embedded) on a unix socket."""
    url = urllib.parse.urlsplit(database_url)
    query = urllib.parse.parse_qs(url.query)
    host = query.get("host", [url.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [url.port or 5432])[0])
    if host.startswith("/"):
        return await FaultProxy("", 0, unix_path=f"{host}/.s.PGSQL.{port}").start()
    return await FaultProxy(host, port).start()


async def test_postgres_link_stalls_and_drops(settings_factory, database_url):
    proxy = await _postgres_proxy(database_url)
    url = urllib.parse.urlsplit(database_url)
    user = f"{url.username}:{url.password}@" if url.password else f"{url.username}@"
    proxied = f"postgresql://{user}127.0.0.1:{proxy.port}{url.path}"
    settings = settings_factory(db_url=proxied, db_acquire_timeout_secs=1, server_request_timeout_secs=2,
                                db_min_connections=1, db_max_connections=4)
    try:
        async with running_app(settings) as node, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=20) as http:
            alice, bob = await register_user(http), await register_user(http)
            accepted: list[bytes] = []
            await _eventually_ok(http, alice, bob, b"before", accepted)
            for fault in (proxy.stall, proxy.drop):
                fault()
                outcomes = [await _post(http, alice, bob, f"{fault.__name__}-{i}".encode()) for i in range(3)]
                accepted += [f"{fault.__name__}-{i}".encode() for i, s in enumerate(outcomes) if s == 200]
                assert any(s != 200 for s in outcomes), outcomes  # a dead database is not silently "fine"
                proxy.heal()
                await _eventually_ok(http, alice, bob, f"after-{fault.__name__}".encode(), accepted)
            ws = await connect(http, bob)
            await _receive_all(ws, accepted)
            await ws.close()
    finally:
        await proxy.close()


async def test_redis_killed_and_restarted_while_messages_flow(settings_factory, redis_server_factory):
    redis = redis_server_factory()
    settings = settings_factory(pubsub_url=redis.url, pubsub_min_backoff_secs=0, pubsub_max_backoff_secs=1)
    async with running_app(settings) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=20) as http:
        alice, bob = await register_user(http), await register_user(http)
        ws = await connect(http, bob)
        accepted: list[bytes] = []
        for i in range(5):
            await _eventually_ok(http, alice, bob, f"up-{i}".encode(), accepted)
        redis.stop()  # SIGKILL: wake-ups are lost, the database still has every accepted message
        for i in range(5):
            if await _post(http, alice, bob, f"down-{i}".encode()) == 200:
                accepted.append(f"down-{i}".encode())
        redis.start()
        for i in range(5):
            await _eventually_ok(http, alice, bob, f"back-{i}".encode(), accepted)
        await _receive_all(ws, accepted)
        await ws.close()


async def test_redis_link_stalls_then_heals(settings_factory, redis_server_factory):
    redis = redis_server_factory()
    proxy = await FaultProxy("127.0.0.1", redis.port).start()
    settings = settings_factory(pubsub_url=f"redis://127.0.0.1:{proxy.port}/0", pubsub_min_backoff_secs=0,
                                pubsub_max_backoff_secs=1, server_request_timeout_secs=3)
    try:
        async with running_app(settings) as node, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=20) as http:
            alice, bob = await register_user(http), await register_user(http)
            ws = await connect(http, bob)
            accepted: list[bytes] = []
            await _eventually_ok(http, alice, bob, b"first", accepted)
            proxy.stall()
            for i in range(2):
                if await _post(http, alice, bob, f"stalled-{i}".encode()) == 200:
                    accepted.append(f"stalled-{i}".encode())
            proxy.drop()
            proxy.heal()
            for i in range(3):
                await _eventually_ok(http, alice, bob, f"healed-{i}".encode(), accepted)
            await _receive_all(ws, accepted)
            await ws.close()
    finally:
        await proxy.close()
