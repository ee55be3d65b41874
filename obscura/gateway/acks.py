"""The per-session ACK batcher: bounded id queue, batched deletes, flush on close (spec §3.5)."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence

from obscura.telemetry import Telemetry

__all__ = ["AckBatcher"]

log = logging.getLogger("obscura.gateway.acks")

DeleteFn = Callable[[Sequence[uuid.UUID]], Awaitable[int]]


async def _closed(ids: Sequence[uuid.UUID]) -> int:
    raise RuntimeError("ACK batcher already flushed")


class AckBatcher:
    """Collects ACKed ids and deletes them every ``batch_size`` ids or within ``flush_interval_s``.

    ``add`` never blocks: beyond ``capacity`` unflushed ids the rest are dropped (counted); those
    messages simply stay queued and come back on the next connection. No task lives between
    deletes: a timer (armed by the first id) or a full batch starts one, and it deletes until
    fewer than a batch remain; one delete at a time per session. (A loop waiting on an event with
    ``wait_for`` cost a task and a timer per ACK frame: performance.md.)
    """

    __slots__ = ("_delete", "_batch_size", "_flush_interval_s", "_capacity", "_pending", "_loop", "_timer",
                 "_running", "_closed", "_dropped", "_batch_sizes")

    def __init__(self, delete: DeleteFn, telemetry: Telemetry, *, batch_size: int, flush_interval_s: float,
                 capacity: int) -> None:
        self._delete = delete
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._capacity = capacity
        self._pending: list[uuid.UUID] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None  # the delete(s) in progress
        self._closed = False
        self._dropped = telemetry.counter("obscura_websocket_ack_dropped_total", "ACK ids dropped")
        self._batch_sizes = telemetry.histogram("obscura_websocket_ack_batch_size", "ids per ACK delete")

    def add(self, ids: Sequence[uuid.UUID]) -> None:
        room = self._capacity - len(self._pending)
        if room < len(ids):
            dropped = len(ids) - max(room, 0)
            log.warning("ACK buffer full: %d ids dropped", dropped)
            self._dropped.add(dropped)
            ids = ids[:max(room, 0)]
        if not ids:
            return
        self._pending.extend(ids)
        if self._running is not None or self._closed:
            return  # the running drain (or the final flush) takes them
        if len(self._pending) >= self._batch_size:
            self._start(everything=False)
        elif self._timer is None:
            self._arm()

    def _arm(self) -> None:
        """The timer fires within flush_interval_s, at the latest point of a node-wide grid of
        tenths of it before then: the timers of many sessions fire in the same loop iteration,
        so their deletes share one statement (MessageRepo.delete_acked)."""
        grid = self._flush_interval_s / 10
        deadline = math.floor((self._loop.time() + self._flush_interval_s) / grid) * grid
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._running is None and not self._closed:
            self._start(everything=True)  # the oldest id has waited flush_interval_s

    def _start(self, *, everything: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._running = self._loop.create_task(self._drain(everything))

    async def _drain(self, everything: bool) -> None:
        try:
            while self._pending and (everything or len(self._pending) >= self._batch_size):
                await self._flush_once()
        finally:
            self._running = None
            if self._pending and self._timer is None and not self._closed:
                self._arm()

    async def _flush_once(self) -> None:
        batch, self._pending = self._pending[:self._batch_size], self._pending[self._batch_size:]
        if not batch:
            return
        self._batch_sizes.record(len(batch))
        try:
            await self._delete(batch)
        except Exception:  # noqa: BLE001 - the rows stay and are redelivered on reconnect
            log.exception("deleting %d ACKed messages failed", len(batch))

    async def flush(self) -> None:
        """Delete everything still pending (the session is ending); waits for a delete in flight."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            while self._running is not None:
                await asyncio.wait({self._running})
            while self._pending:
                await self._flush_once()
        finally:
            self._delete = _closed  # the session's bound method: no cycle outlives the session
