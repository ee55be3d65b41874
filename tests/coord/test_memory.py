"""MemoryCoordinator specifics: bounded memory and lazy expiry on the injected clock."""

from __future__ import annotations

import gc
import uuid

from obscura.coord import Event, MemoryCoordinator
from tests.coord.support import Collector, FakeClock, coord_settings


async def test_expired_entries_are_purged(clock: FakeClock) -> None:
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    await coord.start()
    for n in range(500):
        await coord.put_idempotent(f"k{n}", b"v", 1)
        await coord.put_ticket(f"t{n}", uuid.uuid4(), 5)
    assert coord.stored_entry_count() == 1000
    clock.advance(1)
    await coord.put_idempotent("fresh", b"v", 60)
    assert coord.stored_entry_count() == 501
    clock.advance(4)
    assert await coord.get_idempotent("fresh") == b"v"
    assert coord.stored_entry_count() == 1


async def test_rewritten_key_keeps_its_new_expiry(clock: FakeClock) -> None:
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    await coord.put_idempotent("k", b"old", 1)
    await coord.put_idempotent("k", b"new", 10)
    clock.advance(2)
    assert await coord.get_idempotent("k") == b"new"
    clock.advance(8)
    assert await coord.get_idempotent("k") is None


async def test_publish_returns_before_delivery(clock: FakeClock) -> None:
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    device, got = uuid.uuid4(), Collector()
    coord.subscribe(device, got)
    await coord.publish(device, Event.MESSAGE_RECEIVED)
    assert got.events == []  # delivered by loop.call_soon, not inside publish
    assert await got.wait_for(1) == [1]


async def test_devices_without_subscribers_hold_no_memory(clock: FakeClock) -> None:
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    subs = [coord.subscribe(uuid.uuid4(), Collector()) for _ in range(10)]
    assert coord._router.device_count() == 10
    for sub in subs:
        sub.close()
    assert coord._router.device_count() == 0


async def test_stored_entries_leave_nothing_for_the_garbage_collector(clock: FakeClock) -> None:
    # One idempotency entry per send request: in single-node mode tracked objects per entry were
    # what filled the young generation (bench/RESULTS.md: a 5-9 ms collection every ~10k requests).
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    keys = [f"idempotency:{n}" for n in range(2000)]
    values = [b"response %d" % n for n in range(2000)]
    await coord.put_idempotent("warm-up", b"v", 86_400)
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for key, value in zip(keys, values):
            await coord.put_idempotent(key, value, 86_400)
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert coord.stored_entry_count() == 2001
    assert grown < 100   # was two tuples per entry


async def test_entries_of_different_ttls_expire_independently(clock: FakeClock) -> None:
    coord = MemoryCoordinator(coord_settings(), clock=clock)
    await coord.put_idempotent("long", b"1", 100)
    await coord.put_idempotent("short", b"2", 1)
    clock.advance(2)
    await coord.put_idempotent("other", b"3", 100)   # sweeps
    assert coord.stored_entry_count() == 2   # "short" went although written after "long"
    assert await coord.get_idempotent("long") == b"1"
    clock.advance(99)
    assert await coord.get_idempotent("long") is None and await coord.get_idempotent("other") == b"3"
