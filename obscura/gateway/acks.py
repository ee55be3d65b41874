"""The per-session ACK batcher: bounded id queue, batched deletes, flush on close (spec §3.5)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

from obscura.telemetry import Telemetry

__all__ = ["AckBatcher"]

log = logging.getLogger("obscura.gateway.acks")

DeleteFn = Callable[[Sequence[uuid.UUID]], Awaitable[int]]


class AckBatcher:
    """Collects ACKed ids and deletes them every ``batch_size`` ids or ``flush_interval_s``.

    ``add`` never blocks: beyond ``capacity`` unflushed ids the rest are dropped (counted); those
    messages simply stay queued and come back on the next connection.
    """

    def __init__(self, delete: DeleteFn, telemetry: Telemetry, *, batch_size: int, flush_interval_s: float,
                 capacity: int) -> None:
        self._delete = delete
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._capacity = capacity
        self._pending: list[uuid.UUID] = []
        self._arrived = asyncio.Event()
        self._dropped = telemetry.counter("obscura_websocket_ack_dropped_total", "ACK ids dropped")
        self._batch_sizes = telemetry.histogram("obscura_websocket_ack_batch_size", "ids per ACK delete")

    def add(self, ids: Sequence[uuid.UUID]) -> None:
        room = self._capacity - len(self._pending)
        if room < len(ids):
            dropped = len(ids) - max(room, 0)
            log.warning("ACK buffer full: %d ids dropped", dropped)
            self._dropped.add(dropped)
            ids = ids[:max(room, 0)]
        if ids:
            self._pending.extend(ids)
            self._arrived.set()

    async def run(self) -> None:
        """Until cancelled: wait for a first id, collect until full or the timer fires, delete."""
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            deadline = loop.time() + self._flush_interval_s
            while len(self._pending) < self._batch_size:
                self._arrived.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except (TimeoutError, asyncio.TimeoutError):
                    break
            await self._flush_once()
            if not self._pending:
                self._arrived.clear()

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
        """Delete everything still pending (the session is ending)."""
        while self._pending:
            await self._flush_once()
