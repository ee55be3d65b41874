"""Coordination between nodes: device event bus, gateway tickets, idempotency cache, push queue.

``app.py`` picks the implementation: :class:`MemoryCoordinator` for one node, or
:class:`RedisCoordinator` for a cluster (loaded lazily, so embedded mode never imports redis).
"""

from typing import Any

from obscura.coord.base import (
    CoordinationError,
    Coordinator,
    Event,
    EventCallback,
    ResyncCallback,
    Subscription,
    idempotency_key,
    ticket_key,
)
from obscura.coord.memory import MemoryCoordinator

__all__ = [
    "CoordinationError",
    "Coordinator",
    "Event",
    "EventCallback",
    "MemoryCoordinator",
    "RedisCoordinator",
    "ResyncCallback",
    "Subscription",
    "idempotency_key",
    "ticket_key",
]


def __getattr__(name: str) -> Any:
    if name == "RedisCoordinator":
        from obscura.coord.redis import RedisCoordinator

        return RedisCoordinator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
