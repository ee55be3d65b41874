"""Garbage collection for a node that holds many long-lived connections.

CPython's collector walks every object it tracks in the generations it collects, and a session
is ~47 such objects. At 8,000 idle sessions a full collection paused the loop for ~300 ms, and
the middle-generation pass after a burst of connects for ~385 ms (bench/RESULTS.md); at the
19,000 sessions one process holds it would be ~0.7 s. Sessions, requests and relayed messages
leave no reference cycles behind (tests/test_gcpolicy.py holds them to it), so whatever survives
a young collection can leave the collector's view: after every collection the survivors are
frozen (``gc.freeze()`` splices lists: O(1)). Frozen objects are still freed by reference
counting the moment they die; only a reference cycle among them would stay. What such a missed
cycle would cost is memory, so after ``full_interval_s`` everything is unfrozen and collected (one
full pause: ~0.5 s at 8,000 sessions on a slow box), and what that pass found is logged. A pass
that finds less than 1 % of what it walked doubles the wait for the next one, up to a day; one
that finds more goes back to ``full_interval_s``.

The young generation is collected every 20,000 container allocations instead of 700: a relayed
message allocates a few hundred short-lived objects, and at the default threshold the collector
ran several times per request (~5 % of the server's CPU in ``perf``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from obscura.telemetry import Telemetry

__all__ = ["GcPolicy", "YOUNG_THRESHOLD", "FULL_INTERVAL_S", "FULL_INTERVAL_MAX_S"]

log = logging.getLogger("obscura.gc")

YOUNG_THRESHOLD = 20_000
FULL_INTERVAL_S = 3600.0
FULL_INTERVAL_MAX_S = 86400.0
PAUSE_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_GENERATIONS = ({"generation": "0"}, {"generation": "1"}, {"generation": "2"})


class GcPolicy:
    """Install with start() once the node is up (modules, settings and pools are frozen then);
    stop() puts the collector back as it was. Every collection's pause goes into the histogram
    ``obscura_gc_pause_seconds`` (label ``generation``): a loop stall every request and frame in
    flight waits for."""

    def __init__(self, telemetry: Telemetry | None = None, *, full_interval_s: float = FULL_INTERVAL_S,
                 max_interval_s: float = FULL_INTERVAL_MAX_S) -> None:
        self._pauses = (telemetry or Telemetry()).histogram(
            "obscura_gc_pause_seconds", "garbage collector passes (each one stops the event loop)", "s",
            PAUSE_BUCKETS_S)
        self._started = 0.0
        self.full_interval_s = full_interval_s
        self.max_interval_s = max(max_interval_s, full_interval_s)
        self.next_interval_s = full_interval_s  # until the next full pass
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

    def _after_collection(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        gc.freeze()  # this pass's survivors: no later pass walks them again
        self._pauses.record(time.perf_counter() - self._started, _GENERATIONS[info["generation"]])

    def _arm(self) -> None:
        if self.full_interval_s > 0:
            self._timer = self._loop.call_later(self.next_interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.full_collection()
        self._arm()

    def full_collection(self) -> int:
        """Collect everything, frozen objects included; the number of unreachable objects found."""
        started = time.perf_counter()
        walked = gc.get_freeze_count()  # nearly all of them: each collection freezes its survivors
        gc.unfreeze()
        found = gc.collect()  # the callback freezes the survivors again
        self.full_collections += 1
        self.last_found = found
        if found * 100 < walked:
            self.next_interval_s = min(self.next_interval_s * 2, self.max_interval_s)
        else:
            self.next_interval_s = self.full_interval_s
        log.info("full garbage collection: %d unreachable of ~%d objects in %.0f ms; next in %.0f s",
                 found, walked, (time.perf_counter() - started) * 1000, self.next_interval_s)
        return found
