"""The per-session ACK batcher: batches, timer, one delete at a time, final flush (spec §3.5)."""

from __future__ import annotations

import asyncio
import uuid

from obscura.gateway.acks import AckBatcher
from obscura.telemetry import Telemetry


class Deletes:
    """A delete function that records its batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[uuid.UUID]] = []
        self.in_flight = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, ids) -> int:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise ConnectionError("database gone")
            self.batches.append(list(ids))
            return len(ids)
        finally:
            self.in_flight -= 1


async def _until(predicate, timeout_s: float = 3.0) -> None:
    """Positive conditions are polled (a loaded CI box may be slow); negative ones are checked
    well before the deadline that would make them true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


def _batcher(deletes: Deletes, telemetry: Telemetry | None = None, **overrides) -> AckBatcher:
    options = {"batch_size": 5, "flush_interval_s": 0.6, "capacity": 100, **overrides}
    return AckBatcher(deletes, telemetry or Telemetry(), **options)


async def test_a_partial_batch_waits_for_the_interval():
    deletes = Deletes()
    batcher = _batcher(deletes)
    ids = _ids(3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    batcher.add(ids[:2])
    await asyncio.sleep(0.1)
    batcher.add(ids[2:])  # does not restart the timer: the first id's wait is what counts
    assert deletes.batches == []
    await _until(lambda: deletes.batches == [ids])
    assert loop.time() - started >= 0.54  # within the interval, on the grid of its tenths


async def test_a_full_batch_goes_at_once_and_the_rest_waits():
    deletes = Deletes()
    batcher = _batcher(deletes)
    ids = _ids(7)
    batcher.add(ids)
    await _until(lambda: deletes.batches == [ids[:5]])
    await _until(lambda: len(deletes.batches) == 2)
    assert deletes.batches == [ids[:5], ids[5:]]


async def test_one_delete_at_a_time_and_ids_added_meanwhile_follow():
    deletes = Deletes()
    deletes.gate = asyncio.Event()
    batcher = _batcher(deletes)
    first, second = _ids(5), _ids(10)
    batcher.add(first)
    await _until(lambda: deletes.in_flight == 1)
    batcher.add(second[:5])
    batcher.add(second[5:])
    await asyncio.sleep(0.05)
    assert deletes.in_flight == 1
    deletes.gate.set()
    await _until(lambda: len(deletes.batches) == 3)
    assert deletes.batches == [first, second[:5], second[5:]]
    assert deletes.peak == 1


async def test_flush_waits_for_the_delete_in_flight_then_deletes_the_rest():
    deletes = Deletes()
    deletes.gate = asyncio.Event()
    batcher = _batcher(deletes, flush_interval_s=60)
    first, rest = _ids(5), _ids(3)
    batcher.add(first)
    await _until(lambda: deletes.in_flight == 1)
    batcher.add(rest)
    flushing = asyncio.create_task(batcher.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done()
    deletes.gate.set()
    await asyncio.wait_for(flushing, 2)
    assert deletes.batches == [first, rest] and deletes.peak == 1


async def test_ids_beyond_capacity_are_dropped_and_counted():
    telemetry = Telemetry()
    deletes = Deletes()
    batcher = _batcher(deletes, telemetry, batch_size=100, capacity=4)
    ids = _ids(6)
    batcher.add(ids)
    await batcher.flush()
    assert deletes.batches == [ids[:4]]
    assert telemetry.value("obscura_websocket_ack_dropped_total") == 2


async def test_a_failed_delete_is_logged_and_later_ids_still_go(caplog):
    deletes = Deletes()
    deletes.fail = True
    batcher = _batcher(deletes)
    batcher.add(_ids(5))
    await _until(lambda: "deleting 5 ACKed messages failed" in caplog.text)
    await _until(lambda: batcher._running is None)
    deletes.fail = False
    later = _ids(5)
    batcher.add(later)
    await _until(lambda: deletes.batches == [later])


async def test_an_idle_batcher_keeps_no_task_or_timer():
    deletes = Deletes()
    batcher = _batcher(deletes)
    batcher.add(_ids(5))
    await _until(lambda: deletes.batches and batcher._running is None)
    assert batcher._timer is None


async def test_timers_of_different_sessions_meet_on_a_node_wide_grid():
    # Within the interval, at the latest tenth-of-the-interval mark: sessions whose first ACK
    # came at slightly different times flush in the same loop iteration (one shared statement).
    loop = asyncio.get_running_loop()
    first, second = _batcher(Deletes()), _batcher(Deletes())
    first.add(_ids(1))
    armed_at = loop.time()
    await asyncio.sleep(0.001)
    second.add(_ids(1))
    when = first._timer.when()
    assert armed_at + 0.6 - 0.06 - 1e-6 <= when <= armed_at + 0.6
    assert abs(when / 0.06 - round(when / 0.06)) < 1e-6
    assert second._timer.when() in (when, when + 0.06)  # the same mark unless one was crossed between
    await first.flush()
    await second.flush()
