"""Contract suite: every Coordinator implementation (memory, Redis) behaves the same."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from obscura.coord import CoordinationError, Coordinator, Event, idempotency_key
from tests.coord.support import Collector, CoordEnv


async def barrier(coord: Coordinator) -> None:
    """Publish to a fresh device and wait for it: everything published before has arrived."""
    device, marker = uuid.uuid4(), Collector()
    sub = coord.subscribe(device, marker)
    await coord.publish(device, Event.MESSAGE_RECEIVED)
    await marker.wait_for(1)
    sub.close()


# -- bus ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("event", list(Event))
async def test_each_event_is_delivered(coordinator: Coordinator, event: Event) -> None:
    device, got = uuid.uuid4(), Collector()
    coordinator.subscribe(device, got)
    await coordinator.publish(device, event)
    assert await got.wait_for(1) == [int(event)]


async def test_events_keep_their_order(coordinator: Coordinator) -> None:
    device, got = uuid.uuid4(), Collector()
    coordinator.subscribe(device, got)
    for event in (Event.PREKEY_LOW, Event.MESSAGE_RECEIVED, Event.DISCONNECT):
        await coordinator.publish(device, event)
    assert await got.wait_for(3) == [3, 1, 2]


async def test_several_subscribers_per_device_and_no_cross_talk(coordinator: Coordinator) -> None:
    device, other = uuid.uuid4(), uuid.uuid4()
    first, second, bystander = Collector(), Collector(), Collector()
    coordinator.subscribe(device, first)
    coordinator.subscribe(device, second)
    coordinator.subscribe(other, bystander)
    await coordinator.publish(device, Event.DISCONNECT)
    assert await first.wait_for(1) == [2]
    assert await second.wait_for(1) == [2]
    await barrier(coordinator)
    assert bystander.events == []


async def test_closed_subscription_gets_nothing(coordinator: Coordinator) -> None:
    device, kept, dropped = uuid.uuid4(), Collector(), Collector()
    coordinator.subscribe(device, kept)
    sub = coordinator.subscribe(device, dropped)
    sub.close()
    sub.close()  # idempotent
    assert sub.closed
    await coordinator.publish(device, Event.MESSAGE_RECEIVED)
    await kept.wait_for(1)
    await barrier(coordinator)
    assert dropped.events == []


async def test_callbacks_never_run_inside_publish(coordinator: Coordinator) -> None:
    device, got = uuid.uuid4(), Collector()
    coordinator.subscribe(device, got)
    await coordinator.publish(device, Event.MESSAGE_RECEIVED)
    await got.wait_for(1)
    assert got.tasks[0] is not asyncio.current_task()


async def test_failing_callback_does_not_stop_the_others(coordinator: Coordinator) -> None:
    device, got = uuid.uuid4(), Collector()

    def broken(event: int) -> None:
        raise RuntimeError("boom")

    coordinator.subscribe(device, broken)
    coordinator.subscribe(device, got)
    await coordinator.publish(device, Event.PREKEY_LOW)
    await coordinator.publish(device, Event.MESSAGE_RECEIVED)
    assert await got.wait_for(2) == [3, 1]


async def test_publish_many(coordinator: Coordinator) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    got_a, got_b = Collector(), Collector()
    coordinator.subscribe(a, got_a)
    coordinator.subscribe(b, got_b)
    await coordinator.publish_many([])
    await coordinator.publish_many([(a, Event.MESSAGE_RECEIVED), (b, Event.DISCONNECT),
                                    (a, Event.PREKEY_LOW)])
    assert await got_a.wait_for(2) == [1, 3]
    assert await got_b.wait_for(1) == [2]


@pytest.mark.parametrize("bad", [0, 4, 255, 256, -1])
async def test_publish_rejects_unknown_events(coordinator: Coordinator, bad: int) -> None:
    with pytest.raises(ValueError):
        await coordinator.publish(uuid.uuid4(), bad)
    with pytest.raises(ValueError):
        await coordinator.publish_many([(uuid.uuid4(), Event.MESSAGE_RECEIVED),
                                        (uuid.uuid4(), bad)])


async def test_on_resync_returns_an_unsubscribe_function(coordinator: Coordinator) -> None:
    calls: list[int] = []
    unsubscribe = coordinator.on_resync(lambda: calls.append(1))
    unsubscribe()
    unsubscribe()
    await barrier(coordinator)
    assert calls == []


# -- tickets -----------------------------------------------------------------------------------

async def test_ticket_is_single_use(coordinator: Coordinator) -> None:
    ticket, device = uuid.uuid4().hex, uuid.uuid4()
    await coordinator.put_ticket(ticket, device, 30)
    assert await coordinator.take_ticket(ticket) == str(device).encode("ascii")
    assert await coordinator.take_ticket(ticket) is None
    assert await coordinator.take_ticket(uuid.uuid4().hex) is None


async def test_concurrent_takes_have_exactly_one_winner(coord_env: CoordEnv) -> None:
    peers = await coord_env.peers(4)
    for _ in range(20):
        ticket, device = uuid.uuid4().hex, uuid.uuid4()
        await peers[0].put_ticket(ticket, device, 30)
        results = await asyncio.gather(*(p.take_ticket(ticket) for p in peers for _ in range(2)))
        assert [r for r in results if r is not None] == [str(device).encode()]


async def test_ticket_expires(coord_env: CoordEnv) -> None:
    coord = await coord_env.make()
    ticket, device = uuid.uuid4().hex, uuid.uuid4()
    await coord.put_ticket(ticket, device, 1)
    await coord_env.let_time_pass(1)
    assert await coord.take_ticket(ticket) is None


@pytest.mark.parametrize("ttl", [0, -1, 1.5, True])
async def test_bad_ttls_are_rejected(coordinator: Coordinator, ttl: object) -> None:
    with pytest.raises(ValueError):
        await coordinator.put_ticket("t", uuid.uuid4(), ttl)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await coordinator.put_idempotent("k", b"v", ttl)  # type: ignore[arg-type]


# -- idempotency -------------------------------------------------------------------------------

def test_idempotency_key_is_scoped_to_the_sender_device() -> None:
    sender, key = uuid.UUID(int=1), uuid.UUID("ABCDEF00-0000-4000-8000-0000000000AA")
    assert idempotency_key(sender, key) == (
        "idempotency:submission:00000000-0000-0000-0000-000000000001:"
        "abcdef00-0000-4000-8000-0000000000aa")


async def test_idempotent_put_get(coordinator: Coordinator) -> None:
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    assert await coordinator.get_idempotent(key) is None
    await coordinator.put_idempotent(key, b"\x0a\x00\xff", 60)
    assert await coordinator.get_idempotent(key) == b"\x0a\x00\xff"
    assert await coordinator.get_idempotent(key) == b"\x0a\x00\xff"  # not consumed


async def test_empty_response_is_cached_as_empty_bytes(coordinator: Coordinator) -> None:
    # An all-success SendMessageResponse encodes to zero bytes (spec §1.4 step 6).
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    await coordinator.put_idempotent(key, b"", 60)
    assert await coordinator.get_idempotent(key) == b""


async def test_idempotent_entry_expires(coord_env: CoordEnv) -> None:
    coord = await coord_env.make()
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    await coord.put_idempotent(key, b"response", 1)
    await coord_env.let_time_pass(1)
    assert await coord.get_idempotent(key) is None


# -- push queue --------------------------------------------------------------------------------

async def test_schedule_nx_keeps_the_earlier_time(coord_env: CoordEnv) -> None:
    coord, clock = await coord_env.make(), coord_env.clock
    device = uuid.uuid4()
    start = clock()
    await coord.schedule_push([device], 2)
    assert await coord.push_due_at(device) == pytest.approx(start + 2)
    clock.advance(1)
    await coord.schedule_push([device], 2)
    assert await coord.push_due_at(device) == pytest.approx(start + 2)
    assert await coord.push_due_at(uuid.uuid4()) is None


async def test_cancel_removes_the_job(coordinator: Coordinator) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await coordinator.schedule_push([a, b], 0)
    await coordinator.cancel_push([a])
    await coordinator.cancel_push([])
    assert await coordinator.push_due_at(a) is None
    assert await coordinator.lease_push_jobs(10, 30) == [b]


async def test_lease_takes_only_due_jobs_up_to_the_limit(coord_env: CoordEnv) -> None:
    coord, clock = await coord_env.make(), coord_env.clock
    due = [uuid.uuid4() for _ in range(5)]
    later = uuid.uuid4()
    await coord.schedule_push(due, 0)
    await coord.schedule_push([later], 10)
    assert await coord.lease_push_jobs(0, 30) == []
    first = await coord.lease_push_jobs(2, 30)
    rest = await coord.lease_push_jobs(10, 30)
    assert len(first) == 2 and len(rest) == 3
    assert set(first) | set(rest) == set(due)
    assert later not in first + rest
    assert await coord.push_due_at(first[0]) == pytest.approx(clock() + 30)


async def test_leased_job_is_invisible_until_the_lease_ends(coord_env: CoordEnv) -> None:
    coord, clock = await coord_env.make(), coord_env.clock
    device = uuid.uuid4()
    await coord.schedule_push([device], 2)
    assert await coord.lease_push_jobs(10, 30) == []  # not due yet
    clock.advance(2)
    assert await coord.lease_push_jobs(10, 30) == [device]
    assert await coord.lease_push_jobs(10, 30) == []  # leased: hidden
    clock.advance(29)
    assert await coord.lease_push_jobs(10, 30) == []
    clock.advance(1)
    assert await coord.lease_push_jobs(10, 30) == [device]  # the worker died: due again
    # A new message while leased does not reschedule the job (NX).
    await coord.schedule_push([device], 2)
    assert await coord.push_due_at(device) == pytest.approx(clock() + 30)


async def test_complete_removes_the_job(coordinator: Coordinator) -> None:
    device = uuid.uuid4()
    await coordinator.schedule_push([device], 0)
    assert await coordinator.lease_push_jobs(10, 30) == [device]
    await coordinator.complete_push([device])
    assert await coordinator.push_due_at(device) is None
    await coordinator.schedule_push([device], 0)  # a later message schedules a fresh job
    assert await coordinator.lease_push_jobs(10, 30) == [device]


async def test_concurrent_leases_never_share_a_job(coord_env: CoordEnv) -> None:
    peers = await coord_env.peers(5)
    jobs = [uuid.uuid4() for _ in range(120)]
    await peers[0].schedule_push(jobs, 0)

    async def worker(coord: Coordinator) -> list[uuid.UUID]:
        taken: list[uuid.UUID] = []
        while batch := await coord.lease_push_jobs(7, 30):
            taken.extend(batch)
        return taken

    results = await asyncio.gather(*(worker(p) for p in peers for _ in range(2)))
    everything = [job for batch in results for job in batch]
    assert len(everything) == len(jobs)
    assert set(everything) == set(jobs)


# -- lifecycle ---------------------------------------------------------------------------------

async def test_ping_then_close(coord_env: CoordEnv) -> None:
    coord = await coord_env.make()
    await coord.ping()
    await coord.close()
    await coord.close()  # idempotent
    with pytest.raises(CoordinationError):
        await coord.ping()
    with pytest.raises(CoordinationError):
        await coord.take_ticket("t")


# -- a send's writes after its commit ------------------------------------------------------------

async def test_after_send_wakes_schedules_and_caches(coord_env: CoordEnv) -> None:
    coordinator = await coord_env.make()
    woken, quiet, got = uuid.uuid4(), uuid.uuid4(), Collector()
    coordinator.subscribe(woken, got)
    coordinator.subscribe(quiet, got)
    key = idempotency_key(uuid.uuid4(), uuid.uuid4())
    before = coord_env.clock()
    outcomes = await coordinator.after_send([(woken, Event.MESSAGE_RECEIVED)], [woken, quiet], 30.0,
                                            (key, b"\x0a\x01x", 60))
    assert outcomes == (None, None, None)
    assert await got.wait_for(1) == [1]  # only the device named for a wake-up
    await barrier(coordinator)
    assert got.events == [1]
    for device in (woken, quiet):
        assert await coordinator.push_due_at(device) == pytest.approx(before + 30.0)
    assert await coordinator.get_idempotent(key) == b"\x0a\x01x"
    # Nothing to wake and nobody to push: the response is still cached.
    other = idempotency_key(uuid.uuid4(), uuid.uuid4())
    assert await coordinator.after_send([], [], 30.0, (other, b"", 60)) == (None, None, None)
    assert await coordinator.get_idempotent(other) == b""
