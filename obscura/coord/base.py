"""The coordination interface: device event bus, gateway tickets, idempotency cache, push queue."""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence

from obscura.aio import LoopBound

__all__ = [
    "CoordinationError",
    "Coordinator",
    "Event",
    "EventCallback",
    "ResyncCallback",
    "Subscription",
    "idempotency_key",
    "ticket_key",
]

EventCallback = Callable[[int], None]
ResyncCallback = Callable[[], None]


class Event(enum.IntEnum):
    """The one-byte bus payloads (spec §1.5)."""

    MESSAGE_RECEIVED = 1
    DISCONNECT = 2
    PREKEY_LOW = 3


class CoordinationError(Exception):
    """The coordination backend failed (connection lost, timeout, closed coordinator).

    Callers never see backend exception types (redis.*), so services stay free of I/O imports.
    """


class Subscription:
    """A local callback registered for one device; ``close()`` stops delivery (idempotent)."""

    __slots__ = ("device_id", "_unsubscribe")

    def __init__(self, device_id: uuid.UUID, unsubscribe: Callable[[], None]) -> None:
        self.device_id = device_id
        self._unsubscribe: Callable[[], None] | None = unsubscribe

    @property
    def closed(self) -> bool:
        return self._unsubscribe is None

    def close(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()


def ticket_key(ticket: str) -> str:
    """Redis key of a gateway ticket (spec §1.5)."""
    return f"ws:ticket:{ticket}"


def idempotency_key(sender_device_id: uuid.UUID, key: uuid.UUID) -> str:
    """Idempotency cache key, scoped to the sender device (decisions §4.7; upstream: global)."""
    return f"idempotency:submission:{sender_device_id}:{key}"


class Coordinator(LoopBound, ABC):
    """What nodes share: a wake-up bus, single-use tickets, an idempotency cache, a push queue.

    The bus carries wake-ups, never messages (decisions §4.11): a lost event costs latency, not
    data, because sessions always drain from the database. Device ids are ``uuid.UUID``; on the
    wire they are lower-case hyphenated strings (spec §1.5, §14). Every backend failure surfaces
    as :class:`CoordinationError`.
    """

    #: True when events published here reach only this process (in-process coordination): the
    #: sender may then skip the wake-up of a device whose local sessions it served directly.
    process_local: bool = False

    # -- lifecycle -----------------------------------------------------------------------------
    @abstractmethod
    async def start(self) -> None:
        """Connect and subscribe; returns once events can be received."""

    @abstractmethod
    async def close(self) -> None:
        """Stop owned tasks and release connections (idempotent)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise CoordinationError unless the backend is usable (used by /readyz)."""

    # -- bus (spec §1.5) -----------------------------------------------------------------------
    @abstractmethod
    async def publish(self, device_id: uuid.UUID, event: int) -> None:
        """Send one event to every session of ``device_id`` on every node."""

    @abstractmethod
    async def publish_many(self, items: Iterable[tuple[uuid.UUID, int]]) -> None:
        """Publish several events in one round trip, in order."""

    @abstractmethod
    def subscribe(self, device_id: uuid.UUID, callback: EventCallback) -> Subscription:
        """Register ``callback(event)`` for events of ``device_id`` on this node.

        The callback runs on the event loop, never inside ``publish``; it must not block.
        Several subscriptions per device are allowed.
        """

    @abstractmethod
    def on_resync(self, callback: ResyncCallback) -> Callable[[], None]:
        """Register ``callback()`` to run after the bus reconnects (events may have been lost,
        so sessions re-drain from the database: decisions §4.2). Returns an unsubscribe function.
        """

    # -- gateway tickets (spec §3.2, decisions §4.3) -------------------------------------------
    @abstractmethod
    async def put_ticket(self, ticket: str, device_id: uuid.UUID, ttl_s: int) -> None:
        """Store ``ws:ticket:<ticket>`` = the device UUID string for ``ttl_s`` seconds."""

    @abstractmethod
    async def take_ticket(self, ticket: str) -> bytes | None:
        """Atomically read and delete a ticket; the raw stored bytes, or None if absent.

        Raw bytes because callers must reject non-UTF-8 and non-UUID values (spec §3.2).
        """

    # -- idempotency cache (spec §5.3, decisions §4.7) -----------------------------------------
    @abstractmethod
    async def get_idempotent(self, key: str) -> bytes | None:
        """The cached response bytes (possibly empty) under the full key, or None."""

    @abstractmethod
    async def put_idempotent(self, key: str, value: bytes, ttl_s: int) -> None:
        """Cache ``value`` under the full key for ``ttl_s`` seconds."""

    # -- delayed push queue (spec §6.3) --------------------------------------------------------
    @abstractmethod
    async def schedule_push(self, device_ids: Iterable[uuid.UUID], delay_s: float) -> None:
        """Schedule a push ``delay_s`` from now; an already pending job keeps its earlier time."""

    @abstractmethod
    async def cancel_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        """Drop pending (or leased) push jobs."""

    @abstractmethod
    async def lease_push_jobs(self, limit: int, visibility_s: float) -> list[uuid.UUID]:
        """Atomically take up to ``limit`` due jobs and hide them for ``visibility_s`` seconds."""

    @abstractmethod
    async def complete_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        """Delete jobs that were handled."""

    @abstractmethod
    async def push_due_at(self, device_id: uuid.UUID) -> float | None:
        """Unix time when the device's job is due (or its lease ends); None if no job."""

    # -- a send's writes after its commit ------------------------------------------------------
    async def after_send(self, wakeups: Sequence[tuple[uuid.UUID, int]], push_devices: Collection[uuid.UUID],
                         push_delay_s: float, cache: tuple[str, bytes, int],
                         ) -> tuple[CoordinationError | None, CoordinationError | None, CoordinationError | None]:
        """Publish ``wakeups``, schedule push jobs for ``push_devices`` and cache the response
        (key, value, ttl) of one send request. Each part succeeds or fails on its own: the
        outcome of each (None when done). Backends with round trips send all three in one."""
        outcomes: list[CoordinationError | None] = []
        for needed, call in ((bool(wakeups), lambda: self.publish_many(wakeups)),
                             (bool(push_devices), lambda: self.schedule_push(push_devices, push_delay_s)),
                             (True, lambda: self.put_idempotent(*cache))):
            try:
                if needed:
                    await call()
                outcomes.append(None)
            except CoordinationError as exc:
                outcomes.append(exc)
        return outcomes[0], outcomes[1], outcomes[2]


def checked_ttl_s(ttl_s: int) -> int:
    """TTLs go to Redis ``SET ... EX`` which takes whole positive seconds."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1:
        raise ValueError(f"ttl_s must be a positive integer, got {ttl_s!r}")
    return ttl_s
