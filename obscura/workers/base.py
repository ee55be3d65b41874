"""A periodic background loop: first run at start, then every interval, never spinning on failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from obscura.aio import raise_if_cancelling

__all__ = ["PeriodicWorker"]


class PeriodicWorker:
    """Runs ``cycle()`` once at start, then once per ``interval_s`` until cancelled.

    A cycle is expected to do a bounded amount of work (its own batch limits). Whatever it raises
    is logged and counted by ``on_error``, and the loop simply waits for the next interval, so a
    store that keeps failing costs one attempt per interval, never a busy loop (decisions §4.9).
    Each cycle is bounded by ``cycle_timeout_s`` as well.
    """

    def __init__(self, name: str, cycle: Callable[[], Awaitable[object]], interval_s: float, *,
                 cycle_timeout_s: float | None = None, on_error: Callable[[Exception], None] | None = None,
                 logger: logging.Logger | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.name = name
        self._cycle = cycle
        self.interval_s = float(interval_s)
        self._cycle_timeout_s = cycle_timeout_s
        self._on_error = on_error
        self._log = logger or logging.getLogger(f"obscura.workers.{name}")
        self._task: asyncio.Task[None] | None = None
        self.cycles = 0

    def start(self) -> asyncio.Task[None]:
        """Start the loop on the running event loop; the caller owns (and cancels) the task."""
        if self._task is not None:
            raise RuntimeError(f"worker {self.name} already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"obscura-{self.name}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run_once(self) -> None:
        """One guarded cycle: never raises except on cancellation."""
        try:
            async with asyncio.timeout(self._cycle_timeout_s):
                await self._cycle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure waits for the next interval
            raise_if_cancelling()
            self._log.warning("%s cycle failed: %s: %s", self.name, type(exc).__name__, str(exc)[:200])
            if self._on_error is not None:
                self._on_error(exc)
        finally:
            self.cycles += 1

    async def _run(self) -> None:
        while True:
            await self.run_once()
            raise_if_cancelling()  # a cancel a library swallowed during the cycle
            await asyncio.sleep(self.interval_s)
