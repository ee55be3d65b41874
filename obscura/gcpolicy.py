"""Garbage collection for a node that holds many long-lived connections.

CPython's collector walks every object it tracks in the generations it collects, and a session
is ~47 such objects. At 8,000 idle sessions a full collection paused the loop for ~300 ms, and
the middle-generation pass after a burst of connects for ~385 ms (bench/RESULTS.md); at the
19,000 sessions one process holds it would be ~0.7 s. Sessions, requests and relayed messages
leave no reference cycles behind (tests/test_gcpolicy.py holds them to it), so whatever survives
a young collection can leave the collector's view: after every collection the survivors are
frozen (``gc.freeze()`` splices lists: O(1)). Frozen objects are still freed by reference
counting the moment they die; only a reference cycle among them would stay. What such a missed
cycle would cost is memory, so once per ``full_interval_s`` everything is unfrozen and collected
(one full pause), and what that pass found is logged.

The young generation is collected every 20,000 container allocations instead of 700: a relayed
message allocates a few hundred short-lived objects, and at the default threshold the collector
ran several times per request (~5 % of the server's CPU in ``perf``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

__all__ = ["GcPolicy", "YOUNG_THRESHOLD", "FULL_INTERVAL_S"]

log = logging.getLogger("obscura.gc")

YOUNG_THRESHOLD = 20_000
FULL_INTERVAL_S = 3600.0


class GcPolicy:
    """Install with start() once the node is up (modules, settings and pools are frozen then);
    stop() puts the collector back as it was."""

    def __init__(self, full_interval_s: float = FULL_INTERVAL_S) -> None:
        self.full_interval_s = full_interval_s
        self.full_collections = 0
        self.last_found = 0  # unreachable objects the last full pass found (missed cycles)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved: tuple[int, int, int] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._saved is not None:
            raise RuntimeError("GC policy already started")
        self._saved = gc.get_threshold()
        self._loop = loop
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
        gc.callbacks.append(self._after_collection)
        self._arm()

    def stop(self) -> None:
        if self._saved is None:
            return
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        gc.set_threshold(*self._saved)
        self._saved = None
        gc.unfreeze()

    @staticmethod
    def _after_collection(phase: str, info: dict) -> None:
        if phase == "stop":
            gc.freeze()  # this pass's survivors: no later pass walks them again

    def _arm(self) -> None:
        if self.full_interval_s > 0 and self._loop is not None:
            self._timer = self._loop.call_later(self.full_interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.full_collection()
        self._arm()

    def full_collection(self) -> int:
        """Collect everything, frozen objects included; the number of unreachable objects found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()  # the callback freezes the survivors again
        self.full_collections += 1
        self.last_found = found
        log.info("full garbage collection: %d unreachable objects, %d tracked, %.0f ms", found,
                 gc.get_freeze_count(), (time.perf_counter() - started) * 1000)
        return found
