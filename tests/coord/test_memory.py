"""MemoryCoordinator specifics: bounded memory and lazy expiry on the injected clock."""

from __future__ import annotations

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
