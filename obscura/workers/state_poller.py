"""The state poller: product gauges (users, devices, backlog, attachments) every few minutes (issue 7 §2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from obscura.telemetry import Telemetry
from obscura.workers.base import PeriodicWorker

__all__ = ["StatePoller", "STATE_GAUGES"]

# counts() key -> gauge name (the planned names of spec §8.1).
STATE_GAUGES = {
    "users": ("obscura_users_total", "registered users"),
    "devices": ("obscura_devices_total", "provisioned devices"),
    "pending_messages": ("obscura_pending_messages_total", "stored envelopes not yet acknowledged"),
    "attachments": ("obscura_attachments_total_count", "stored attachments"),
    "attachments_bytes": ("obscura_attachments_total_bytes", "bytes of stored attachments"),
}


class StatePoller:
    """Runs ``counts()`` (one cheap query) at start, then every ``interval_s``; failures wait."""

    def __init__(self, counts: Callable[[], Awaitable[Mapping[str, int]]], telemetry: Telemetry,
                 interval_s: float, *, timeout_s: float = 30.0) -> None:
        self._counts = counts
        self._telemetry = telemetry
        errors = telemetry.counter("obscura_state_poller_errors_total", "failed state poller cycles")
        self.worker = PeriodicWorker("state-poller", self.poll_once, interval_s, cycle_timeout_s=timeout_s,
                                     on_error=lambda exc: errors.add(1))

    async def poll_once(self) -> None:
        counts = await self._counts()
        for key, value in counts.items():
            spec = STATE_GAUGES.get(key)
            if spec is not None:  # unknown keys are ignored: a store reports what it can tell
                self._telemetry.gauge(spec[0], spec[1]).set(value)

    def start(self) -> asyncio.Task[None]:
        """Start the loop; the caller owns the task and cancels it on shutdown."""
        return self.worker.start()
