"""Deletes expired attachments in bounded batches, blob first and row second (spec §6.1, decisions §4.9)."""

from __future__ import annotations

import asyncio
import logging

from obscura.services.attachments import AttachmentService
from obscura.telemetry import Telemetry
from obscura.workers.base import PeriodicWorker

__all__ = ["AttachmentCleanupWorker"]

log = logging.getLogger("obscura.workers.attachment_cleanup")


class AttachmentCleanupWorker:
    """Every ``interval_s``: up to ``max_batches`` batches of ``batch_size`` expired attachments.

    Upstream repeats until nothing is left and retries a failing delete forever (spec §13 item 12);
    here a cycle stops at the first batch with a failure (those rows keep their blobs' names and
    are retried next cycle) and after ``max_batches`` batches, so a broken store costs one
    attempt per interval.
    """

    def __init__(self, service: AttachmentService, telemetry: Telemetry, *, interval_s: float,
                 batch_size: int, max_batches: int = 20) -> None:
        self._service = service
        self.batch_size = batch_size
        self.max_batches = max_batches
        self._errors = telemetry.counter("obscura_attachment_cleanup_errors_total", "failed attachment GC cycles")
        self._loop = PeriodicWorker("attachment-cleanup", self.run_cycle, interval_s,
                                    on_error=lambda _exc: self._errors.add(1), logger=log)

    def start(self) -> asyncio.Task[None]:
        return self._loop.start()

    async def stop(self) -> None:
        """Cancel the loop and wait for it (a cycle in progress is cancelled)."""
        await self._loop.stop()

    async def cleanup_batch(self) -> int:
        """One batch; returns how many attachments were deleted."""
        _selected, deleted, _failed = await self._service.delete_expired_batch(self.batch_size)
        return deleted

    async def run_cycle(self) -> int:
        """One bounded cycle; returns how many attachments were deleted. Raises on a store failure."""
        total = 0
        for _ in range(self.max_batches):
            selected, deleted, failed = await self._service.delete_expired_batch(self.batch_size)
            total += deleted
            if failed:
                self._errors.add(1)
                log.warning("attachment cleanup: %d blob deletes failed; retrying next cycle", failed)
                break
            if selected < self.batch_size:
                break
        return total
