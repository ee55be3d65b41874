"""Node-local fan-out of bus events to the callbacks of each device's sessions."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable

from obscura.coord.base import EventCallback, ResyncCallback, Subscription

__all__ = ["LocalRouter"]

log = logging.getLogger(__name__)


class LocalRouter:
    """Device id -> callbacks, plus resync listeners.

    Holds an entry only for devices with at least one live subscription (spec §1.5: one local
    channel per device with a session on this node), so memory follows the session count.
    A failing callback is logged and never stops delivery to the others.
    """

    def __init__(self) -> None:
        self._by_device: dict[uuid.UUID, dict[int, EventCallback]] = {}
        self._resync: dict[int, ResyncCallback] = {}
        self._ids = itertools.count()

    def subscribe(self, device_id: uuid.UUID, callback: EventCallback) -> Subscription:
        if not callable(callback):
            raise TypeError("callback must be callable")
        token = next(self._ids)
        self._by_device.setdefault(device_id, {})[token] = callback
        return Subscription(device_id, lambda: self._unsubscribe(device_id, token))

    def _unsubscribe(self, device_id: uuid.UUID, token: int) -> None:
        callbacks = self._by_device.get(device_id)
        if callbacks is None:
            return
        callbacks.pop(token, None)
        if not callbacks:
            del self._by_device[device_id]

    def on_resync(self, callback: ResyncCallback) -> Callable[[], None]:
        token = next(self._ids)
        self._resync[token] = callback
        return lambda: self._resync.pop(token, None) and None

    def subscriber_count(self, device_id: uuid.UUID) -> int:
        return len(self._by_device.get(device_id, ()))

    def device_count(self) -> int:
        return len(self._by_device)

    def dispatch(self, device_id: uuid.UUID, event: int) -> None:
        callbacks = self._by_device.get(device_id)
        if not callbacks:
            return
        # Snapshot: a callback may close its own (or another) subscription while we iterate.
        for callback in tuple(callbacks.values()):
            try:
                callback(event)
            except Exception:
                log.exception("bus event callback failed", extra={"device_id": str(device_id)})

    def fire_resync(self) -> None:
        for callback in tuple(self._resync.values()):
            try:
                callback()
            except Exception:
                log.exception("bus resync callback failed")

    def clear(self) -> None:
        self._by_device.clear()
        self._resync.clear()
