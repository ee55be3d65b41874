"""In-process coordination for a single node (embedded mode, decisions §5)."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable

from obscura.config import Settings
from obscura.coord.base import (
    CoordinationError,
    Coordinator,
    EventCallback,
    ResyncCallback,
    Subscription,
    checked_ttl_s,
)
from obscura.coord.router import LocalRouter
from obscura.coord.wire import encode_event

__all__ = ["MemoryCoordinator"]


class _ExpiringStore:
    """Key -> bytes with a TTL, read with the injected clock.

    Expired entries are dropped lazily on access and eagerly by a sweep on every write and read,
    so memory stays bounded by the entries alive within one TTL.

    Writes with the same TTL expire in the order they were made, so each TTL gets two FIFO queues
    (expiry times, keys) rather than one heap of (time, key) tuples: a tuple per write is an object
    the garbage collector tracks, and in single-node mode every send request writes one (its
    idempotency entry). Those tuples alone made the young generation fill up and be collected,
    with a 5-9 ms pause, every ~10,000 requests (bench/RESULTS.md); floats and strings are not
    tracked.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._values: dict[str, bytes] = {}
        self._expires: dict[str, float] = {}
        self._queues: dict[float, tuple[deque[float], deque[str]]] = {}  # TTL -> (times, keys)

    def __len__(self) -> int:
        return len(self._values)

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        now = self._clock()
        self.sweep(now)
        expires_at = now + ttl_s
        self._values[key] = bytes(value)
        self._expires[key] = expires_at
        queue = self._queues.get(ttl_s)
        if queue is None:
            queue = self._queues[ttl_s] = (deque(), deque())
        queue[0].append(expires_at)
        queue[1].append(key)

    def get(self, key: str) -> bytes | None:
        now = self._clock()
        self.sweep(now)
        expires_at = self._expires.get(key)
        if expires_at is None or expires_at <= now:
            return None
        return self._values[key]

    def take(self, key: str) -> bytes | None:
        value = self.get(key)
        if value is not None:
            del self._values[key], self._expires[key]
        return value

    def sweep(self, now: float) -> None:
        expires = self._expires
        for times, keys in self._queues.values():
            while times and times[0] <= now:
                expires_at, key = times.popleft(), keys.popleft()
                # The key may have been rewritten with a later expiry, or taken; only drop the stale one.
                if expires.get(key) == expires_at:
                    del self._values[key], expires[key]


class MemoryCoordinator(Coordinator):
    process_local = True

    """Same contract as the Redis coordinator, inside one process.

    Nothing here awaits, so every operation is atomic with respect to other tasks: ticket
    takes and leases cannot race. Events are delivered via ``loop.call_soon`` so a publisher
    never runs subscriber callbacks re-entrantly.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._router = LocalRouter()
        self._tickets = _ExpiringStore(clock)
        self._idempotency = _ExpiringStore(clock)
        self._push_jobs: dict[uuid.UUID, float] = {}
        self._pending: deque[tuple[uuid.UUID, int]] = deque()
        self._drain_scheduled = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._router.clear()

    async def ping(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise CoordinationError("coordinator is closed")

    def _open_stores(self) -> None:
        """Check we are open and purge both stores, so an unused one cannot hoard dead entries."""
        self._check_open()
        now = self._clock()
        self._tickets.sweep(now)
        self._idempotency.sweep(now)

    # -- bus -----------------------------------------------------------------------------------
    async def publish(self, device_id: uuid.UUID, event: int) -> None:
        await self.publish_many(((device_id, event),))

    async def publish_many(self, items: Iterable[tuple[uuid.UUID, int]]) -> None:
        self._check_open()
        # Validate everything first so a bad item publishes nothing, as with a failed pipeline.
        batch = [(_as_uuid(device_id), encode_event(event)[0]) for device_id, event in items]
        if not batch:
            return
        self._pending.extend(batch)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.bound_loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        pending = self._pending
        while pending:
            device_id, event = pending.popleft()
            self._router.dispatch(device_id, event)

    def subscribe(self, device_id: uuid.UUID, callback: EventCallback) -> Subscription:
        return self._router.subscribe(_as_uuid(device_id), callback)

    def on_resync(self, callback: ResyncCallback) -> Callable[[], None]:
        # In-process delivery never drops events, so there is never anything to resync.
        return self._router.on_resync(callback)

    # -- tickets -------------------------------------------------------------------------------
    async def put_ticket(self, ticket: str, device_id: uuid.UUID, ttl_s: int) -> None:
        self._open_stores()
        value = str(_as_uuid(device_id)).encode("ascii")
        self._tickets.put(ticket, value, checked_ttl_s(ttl_s))

    async def take_ticket(self, ticket: str) -> bytes | None:
        self._open_stores()
        return self._tickets.take(ticket)

    # -- idempotency ---------------------------------------------------------------------------
    async def get_idempotent(self, key: str) -> bytes | None:
        self._open_stores()
        return self._idempotency.get(key)

    async def put_idempotent(self, key: str, value: bytes, ttl_s: int) -> None:
        self._open_stores()
        self._idempotency.put(key, value, checked_ttl_s(ttl_s))

    # -- push queue ----------------------------------------------------------------------------
    async def schedule_push(self, device_ids: Iterable[uuid.UUID], delay_s: float) -> None:
        self._check_open()
        due_at = self._clock() + float(delay_s)
        for device_id in device_ids:
            self._push_jobs.setdefault(_as_uuid(device_id), due_at)  # NX: keep the earlier job

    async def cancel_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        await self.complete_push(device_ids)

    async def complete_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        self._check_open()
        for device_id in device_ids:
            self._push_jobs.pop(_as_uuid(device_id), None)

    async def lease_push_jobs(self, limit: int, visibility_s: float) -> list[uuid.UUID]:
        self._check_open()
        if limit <= 0:
            return []
        now = self._clock()
        # Same order as ZRANGEBYSCORE: by score, then by member string.
        due = sorted((score, str(d), d) for d, score in self._push_jobs.items() if score <= now)
        leased = [d for _, _, d in due[:limit]]
        lease_until = now + float(visibility_s)
        for device_id in leased:
            self._push_jobs[device_id] = lease_until
        return leased

    async def push_due_at(self, device_id: uuid.UUID) -> float | None:
        self._check_open()
        return self._push_jobs.get(_as_uuid(device_id))

    # -- introspection for tests -----------------------------------------------------------------
    def stored_entry_count(self) -> int:
        """Tickets plus idempotency entries currently held (expired ones are purged on access)."""
        return len(self._tickets) + len(self._idempotency)


def _as_uuid(device_id: uuid.UUID) -> uuid.UUID:
    if not isinstance(device_id, uuid.UUID):
        raise TypeError(f"device id must be a uuid.UUID, got {type(device_id).__name__}")
    return device_id
