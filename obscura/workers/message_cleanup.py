"""Message cleanup (spec §5.4) and refresh-token cleanup (§6.8): bounded work per cycle."""

from __future__ import annotations

import logging
from typing import Protocol

from obscura.telemetry import Telemetry
from obscura.workers.base import PeriodicWorker

__all__ = ["MessageCleanup", "RefreshTokenCleanup", "BATCH_ROWS", "MAX_BATCHES"]

log = logging.getLogger("obscura.workers.cleanup")

BATCH_ROWS = 10_000   # rows per statement: short transactions, no long locks
MAX_BATCHES = 50      # per cycle; the rest waits for the next cycle


class MessageCleanupStore(Protocol):
    async def delete_expired(self, limit: int) -> int: ...
    async def prune_inboxes(self, max_per_device: int, limit: int) -> int: ...


class RefreshTokenStore(Protocol):
    async def delete_expired_refresh_tokens(self, limit: int) -> int: ...


async def _drain(step, *args) -> int:
    total = 0
    for _ in range(MAX_BATCHES):
        n = await step(*args, BATCH_ROWS)
        total += n
        if n < BATCH_ROWS:
            break
    return total


class MessageCleanup:
    """Expired messages first, then each device's inbox pruned to its newest N (first run at start)."""

    def __init__(self, store: MessageCleanupStore, telemetry: Telemetry, *, inbox_max: int, interval_s: float) -> None:
        self._store = store
        self._inbox_max = inbox_max
        self._overflow = telemetry.counter("obscura_messages_overflow_total", "rows pruned by the inbox cap")
        self.worker = PeriodicWorker("message_cleanup", self.run_cycle, interval_s, logger=log)

    async def run_cycle(self) -> tuple[int, int]:
        expired = pruned = 0
        try:
            expired = await _drain(self._store.delete_expired)
        except Exception:  # noqa: BLE001 - each step logs its own errors and the other still runs
            log.exception("deleting expired messages failed")
        try:
            pruned = await _drain(self._store.prune_inboxes, self._inbox_max)
            self._overflow.add(pruned)
        except Exception:  # noqa: BLE001
            log.exception("pruning inboxes failed")
        if expired or pruned:
            log.info("message cleanup: %d expired, %d over the inbox cap", expired, pruned)
        return expired, pruned


class RefreshTokenCleanup:
    def __init__(self, store: RefreshTokenStore, *, interval_s: float) -> None:
        self._store = store
        self.worker = PeriodicWorker("refresh_token_cleanup", self.run_cycle, interval_s, logger=log)

    async def run_cycle(self) -> int:
        return await _drain(self._store.delete_expired_refresh_tokens)
