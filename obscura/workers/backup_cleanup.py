"""Resets backup slots stuck in UPLOADING past the stale threshold, in bounded batches (spec §6.2),
and sweeps the backup objects for orphans, a bounded step per cycle (decisions §4.5)."""

from __future__ import annotations

import asyncio
import logging

from obscura.services.backups import BackupService
from obscura.telemetry import Telemetry
from obscura.workers.base import PeriodicWorker

__all__ = ["BackupCleanupWorker"]

log = logging.getLogger("obscura.workers.backup_cleanup")


class BackupCleanupWorker:
    """Every ``interval_s``: up to ``max_batches`` batches of ``batch_size`` stale slots.

    Slots only get stuck here when a node dies mid-upload: a failed upload releases its slot at
    once (decisions §4.8). A cycle never loops on a failing store (decisions §4.9).

    Each successful cycle then examines the next ``sweep_batch`` backup keys (one listing and one
    query) and deletes the objects nothing else will (BackupService.sweep_orphans); the sweep
    starts over after the last key, so every object is looked at once per
    ``keys / sweep_batch`` cycles (with 1,000 per 5-minute cycle: 100,000 objects a day).
    """

    def __init__(self, service: BackupService, telemetry: Telemetry, *, interval_s: float,
                 batch_size: int = 50, max_batches: int = 20, sweep_batch: int = 1000) -> None:
        self._service = service
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.sweep_batch = sweep_batch
        self._sweep_after: str | None = None  # where the sweep goes on
        self._orphans = telemetry.counter("obscura_backup_cleanup_orphans_deleted",
                                          "orphaned backup objects deleted by the sweep")
        self._runs = telemetry.counter("obscura_backup_cleanup_runs", "successful backup GC cycles")
        self._cleaned = telemetry.counter("obscura_backup_cleanup_cleaned", "stale backup slots reset")
        self._errors = telemetry.counter("obscura_backup_cleanup_errors", "failed backup GC cycles")
        self._loop = PeriodicWorker("backup-cleanup", self.run_cycle, interval_s,
                                    on_error=lambda _exc: self._errors.add(1), logger=log)

    def start(self) -> asyncio.Task[None]:
        return self._loop.start()

    async def stop(self) -> None:
        """Cancel the loop and wait for it (a cycle in progress is cancelled)."""
        await self._loop.stop()

    async def cleanup_stale(self) -> int:
        """One batch; returns how many slots were reset."""
        _selected, reset, failed = await self._service.reset_stale_batch(self.batch_size)
        if reset:
            self._cleaned.add(reset)
        if failed:
            self._errors.add(1)
        return reset

    async def run_cycle(self) -> int:
        """One bounded cycle; returns how many slots were reset. Raises on a store failure."""
        total = 0
        for _ in range(self.max_batches):
            selected, reset, failed = await self._service.reset_stale_batch(self.batch_size)
            total += reset
            if reset:
                self._cleaned.add(reset)
            if failed:
                self._errors.add(1)
                return total
            if selected < self.batch_size:
                break
        await self.sweep_step()
        self._runs.add(1)
        return total

    async def sweep_step(self) -> int:
        """The sweep's next step; returns how many orphaned objects it deleted. Raises on a store failure."""
        self._sweep_after, deleted = await self._service.sweep_orphans(self._sweep_after, self.sweep_batch)
        if deleted:
            self._orphans.add(deleted)
        return deleted
