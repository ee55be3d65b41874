"""Redis-only behaviour: raw garbage on the bus, byte-level interop, reconnects, lifecycle."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from obscura.coord import CoordinationError, Event, idempotency_key
from obscura.coord.redis import RedisCoordinator
from tests.coord.support import Collector, FakeClock, coord_settings, drop_keys
from tests.fixtures.redis import RedisServer


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at (and write) the bytes other nodes would see."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def coord(redis_url: str, clock: FakeClock) -> AsyncIterator[RedisCoordinator]:
    coordinator = RedisCoordinator(coord_settings(), redis_url, clock=clock)
    await coordinator.start()
    try:
        yield coordinator
    finally:
        await coordinator.close()
        await drop_keys(redis_url, coordinator._queue_key)


async def barrier(coord: RedisCoordinator) -> None:
    device, marker = uuid.uuid4(), Collector()
    sub = coord.subscribe(device, marker)
    await coord.publish(device, Event.MESSAGE_RECEIVED)
    await marker.wait_for(1)
    sub.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


# -- the bus ignores what it does not understand (spec §1.5) -----------------------------------

async def test_garbage_on_the_channel_is_ignored(coord: RedisCoordinator,
                                                 raw: aioredis.Redis) -> None:
    prefix = coord._prefix
    device, got = uuid.uuid4(), Collector()
    coord.subscribe(device, got)
    channel = f"{prefix}{device}"
    for payload in (b"", b"\x00", b"\x04", b"\xff", b"x"):
        await raw.publish(channel, payload)
    for bad_channel in (f"{prefix}not-a-uuid", f"{prefix}", f"{prefix}{device}x",
                        f"{prefix}{str(device).replace('-', '_')}".encode(),
                        f"{prefix}".encode() + b"\xff\xfe", f"{prefix}{device}-".encode()):
        await raw.publish(bad_channel, b"\x01")
    await barrier(coord)
    assert got.events == []


async def test_first_byte_and_lenient_uuid_forms_are_accepted_like_upstream(
        coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    # Upstream reads payload.first() and parses the suffix with Uuid::parse_str.
    prefix = coord._prefix
    device, got = uuid.uuid4(), Collector()
    coord.subscribe(device, got)
    await raw.publish(f"{prefix}{device}", b"\x02trailing")
    await raw.publish(f"{prefix}{str(device).upper()}", b"\x03")
    await raw.publish(f"{prefix}{device.hex}", b"\x01")
    await raw.publish(f"{prefix}{{{device}}}", b"\x02")
    await raw.publish(f"{prefix}urn:uuid:{device}", b"\x01")
    assert await got.wait_for(5) == [2, 3, 1, 2, 1]


async def test_glob_characters_in_the_prefix_match_literally(redis_url: str,
                                                             raw: aioredis.Redis) -> None:
    settings = coord_settings(notifications_channel_prefix=f"test:{uuid.uuid4().hex[:8]}:[a]*?:")
    coord = RedisCoordinator(settings, redis_url)
    await coord.start()
    try:
        device, got = uuid.uuid4(), Collector()
        coord.subscribe(device, got)
        lookalike = settings.notifications_channel_prefix.replace("[a]*?", "a-x")
        await raw.publish(f"{lookalike}{device}", b"\x01")
        await coord.publish(device, Event.PREKEY_LOW)
        assert await got.wait_for(1) == [3]
        await barrier(coord)
        assert got.events == [3]
    finally:
        await coord.close()


# -- byte-exact interop with upstream nodes (spec §1.5, §14) -----------------------------------

async def test_bus_bytes(coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    device = uuid.uuid4()
    pubsub = raw.pubsub()
    await pubsub.psubscribe(f"{coord._prefix}*")
    assert (await pubsub.get_message(timeout=5))["type"] == "psubscribe"
    try:
        await coord.publish(device, Event.MESSAGE_RECEIVED)
        await coord.publish_many([(device, Event.DISCONNECT), (device, Event.PREKEY_LOW)])
        seen = []
        while len(seen) < 3:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert msg is not None
            seen.append((msg["channel"], msg["data"]))
    finally:
        await pubsub.aclose()
    channel = f"{coord._prefix}{device}".encode()
    assert seen == [(channel, b"\x01"), (channel, b"\x02"), (channel, b"\x03")]
    assert coord._prefix.endswith("user:")


async def test_ticket_bytes(coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    ticket, device = uuid.uuid4().hex, uuid.UUID("0190F3C2-AAAA-7BBB-8CCC-DDDDDDDDDDDD")
    await coord.put_ticket(ticket, device, 30)
    assert await raw.get(f"ws:ticket:{ticket}") == b"0190f3c2-aaaa-7bbb-8ccc-dddddddddddd"
    assert 0 < await raw.ttl(f"ws:ticket:{ticket}") <= 30
    # A ticket written by an upstream node is taken by us, and vice versa it is gone for them.
    other = uuid.uuid4().hex
    await raw.set(f"ws:ticket:{other}", str(device), ex=30)
    assert await coord.take_ticket(other) == str(device).encode()
    assert await raw.exists(f"ws:ticket:{other}") == 0


async def test_ticket_returns_raw_bytes_even_when_not_a_uuid(coord: RedisCoordinator,
                                                             raw: aioredis.Redis) -> None:
    ticket = uuid.uuid4().hex
    await raw.set(f"ws:ticket:{ticket}", b"\xff\xfenot-utf8", ex=30)
    assert await coord.take_ticket(ticket) == b"\xff\xfenot-utf8"


async def test_idempotency_bytes(coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    await coord.put_idempotent(key, b"\x0a\x12\x00", 86400)
    assert await raw.get(key) == b"\x0a\x12\x00"
    assert 86000 < await raw.ttl(key) <= 86400
    assert key.startswith("idempotency:submission:")
    await raw.delete(key)  # a shared server should not keep a day-long test key


async def test_push_queue_bytes(coord: RedisCoordinator, raw: aioredis.Redis,
                                clock: FakeClock) -> None:
    queue = coord._queue_key
    device = uuid.uuid4()
    clock.now = 1_700_000_000.25
    await coord.schedule_push([device], 2)
    assert await raw.zrange(queue, 0, -1, withscores=True) == [
        (str(device).encode(), 1_700_000_002.25)]
    # Upstream schedules with whole seconds; its jobs lease here like ours.
    upstream_job = uuid.uuid4()
    await raw.zadd(queue, {str(upstream_job): 1_700_000_001.0})
    clock.now = 1_700_000_003.0
    leased = await coord.lease_push_jobs(10, 30)
    assert leased == [upstream_job, device]  # ZRANGEBYSCORE order
    assert await raw.zscore(queue, str(device)) == 1_700_000_033.0
    await coord.complete_push(leased)
    assert await raw.exists(queue) == 0


async def test_lease_drops_members_that_are_not_device_ids(coord: RedisCoordinator,
                                                           raw: aioredis.Redis,
                                                           clock: FakeClock) -> None:
    queue = coord._queue_key
    good = uuid.uuid4()
    await raw.zadd(queue, {"garbage": clock() - 1, str(good): clock() - 1})
    assert await coord.lease_push_jobs(10, 30) == [good]
    assert await raw.zscore(queue, "garbage") is None


# -- reconnects (decisions §4.2) ---------------------------------------------------------------

async def test_subscriber_reconnects_forever_and_resyncs(
        redis_server_factory: Callable[[], RedisServer]) -> None:
    server = redis_server_factory()
    coord = RedisCoordinator(coord_settings(), server.url, command_timeout_s=1.0,
                             health_check_s=0.5)
    await coord.start()
    try:
        device, got = uuid.uuid4(), Collector()
        coord.subscribe(device, got)
        resyncs: list[float] = []
        coord.on_resync(lambda: resyncs.append(time.monotonic()))
        await coord.publish(device, Event.MESSAGE_RECEIVED)
        assert await got.wait_for(1) == [1]

        for round_ in range(2):
            server.stop()
            await wait_until(lambda: not coord.subscribed)
            with pytest.raises(CoordinationError):
                await coord.ping()
            with pytest.raises(CoordinationError):
                await coord.publish(device, Event.MESSAGE_RECEIVED)
            await asyncio.sleep(1.5)  # several failed attempts while the server is down
            server.start()
            await wait_until(lambda: len(resyncs) == round_ + 1)
            assert coord.subscribed
            await coord.ping()
            await coord.publish(device, Event.PREKEY_LOW)
            await got.wait_for(2 + round_)
        assert got.events == [1, 3, 3]
        assert len(resyncs) == 2
    finally:
        await coord.close()


async def test_start_fails_cleanly_when_redis_is_unreachable(
        redis_server_factory: Callable[[], RedisServer]) -> None:
    server = redis_server_factory()
    server.stop()
    coord = RedisCoordinator(coord_settings(), server.url, command_timeout_s=0.5,
                             start_timeout_s=1.0)
    with pytest.raises(CoordinationError):
        await coord.start()
    assert coord._listener is None
    with pytest.raises(CoordinationError):
        await coord.ping()


async def test_close_cancels_the_listener(redis_url: str) -> None:
    coord = RedisCoordinator(coord_settings(), redis_url)
    await coord.start()
    listener = coord._listener
    assert listener is not None and not listener.done()
    await coord.close()
    assert listener.done()
    assert not coord.subscribed


async def test_idle_subscriber_stays_connected(redis_url: str) -> None:
    # Health-check pings on a quiet line must not be mistaken for a dead connection.
    coord = RedisCoordinator(coord_settings(), redis_url, health_check_s=0.1)
    await coord.start()
    try:
        resyncs: list[int] = []
        coord.on_resync(lambda: resyncs.append(1))
        await asyncio.sleep(0.8)
        assert coord.subscribed and resyncs == []
        await barrier(coord)
    finally:
        await coord.close()


def test_valkey_urls_are_accepted() -> None:
    coord = RedisCoordinator(coord_settings(), "valkey://127.0.0.1:1/0")
    assert coord._url == "redis://127.0.0.1:1/0"
    with pytest.raises(ValueError):
        RedisCoordinator(coord_settings(), None)


async def test_after_send_parts_fail_on_their_own(coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    # The three writes share one pipeline; an error reply for one (the push queue key holds a
    # string here: WRONGTYPE) fails only that part.
    await raw.set(coord._queue_key, b"not a sorted set")
    device, got = uuid.uuid4(), Collector()
    coord.subscribe(device, got)
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    published, scheduled, cached = await coord.after_send([(device, Event.MESSAGE_RECEIVED)], [device], 30.0,
                                                          (key, b"r", 60))
    assert published is None and cached is None
    assert isinstance(scheduled, CoordinationError)
    assert await got.wait_for(1) == [1]
    assert await raw.get(key) == b"r"
    await raw.delete(coord._queue_key)



async def test_commands_queued_while_a_pipeline_is_in_flight_go_out_together(coord: RedisCoordinator,
                                                                              raw: aioredis.Redis) -> None:
    # One pipeline in flight at a time: what is queued while it waits goes out in one write
    # when it is done, however many loop ticks it was queued over. Redis is held back (an
    # injected slow server: CLIENT PAUSE) so the first pipeline stays in flight.
    proto = await coord._pipe.connection()
    sizes: list[int] = []
    send = proto.send_batch

    def counting(payload: bytes, replies: int):
        sizes.append(replies)
        return send(payload, replies)

    proto.send_batch = counting
    keys = [idempotency_key(uuid.uuid4(), uuid.uuid4()) for _ in range(4)]
    await raw.set(keys[2], b"two")
    await raw.execute_command("CLIENT", "PAUSE", "300", "ALL")
    first = asyncio.ensure_future(coord.get_idempotent(keys[0]))
    await asyncio.sleep(0.05)  # its pipeline is out; Redis holds it
    later = []
    for key in keys[1:]:
        later.append(asyncio.ensure_future(coord.get_idempotent(key)))
        await asyncio.sleep(0.01)  # each on a loop tick of its own
    assert sizes == [1]
    assert await asyncio.gather(first, *later) == [None, None, b"two", None]
    assert sizes == [1, 3]
    await raw.delete(keys[2])


async def test_close_fails_what_waits_behind_the_pipeline_in_flight(redis_url: str, raw: aioredis.Redis) -> None:
    coord = RedisCoordinator(coord_settings(), redis_url)
    await coord.start()
    try:
        await raw.execute_command("CLIENT", "PAUSE", "300", "ALL")
        first = asyncio.ensure_future(coord.get_idempotent("obscura-test:a"))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(coord.get_idempotent("obscura-test:b"))
        await asyncio.sleep(0.01)
    finally:
        await coord.close()
    for future in (first, waiting):
        with pytest.raises(CoordinationError):
            await asyncio.wait_for(future, 5)


async def test_new_pool_connections_send_no_refused_handshake(coord: RedisCoordinator, raw: aioredis.Redis) -> None:
    """redis-py's pool connections skip CLIENT SETINFO (it reads its own version from disk for each
    connection) and the maintenance-notification handshake; a Redis older than 7.2 refuses both,
    and counts each refusal in its error statistics."""
    async def refusals() -> int:
        stats = await raw.info("errorstats")
        return sum(v["count"] for k, v in stats.items() if k.startswith("errorstat_"))

    before = await refusals()
    tickets = [f"handshake-{i}-{uuid.uuid4()}" for i in range(8)]
    await asyncio.gather(*(coord.put_ticket(t, uuid.uuid4(), 30) for t in tickets))  # the pool grows
    assert all(await asyncio.gather(*(coord.take_ticket(t) for t in tickets)))
    assert await refusals() == before
    pool = coord._client().connection_pool
    assert len(pool._in_use_connections) + len(pool._available_connections) >= 2  # new connections were made
