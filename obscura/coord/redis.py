"""Redis/Valkey coordination for clusters, byte-compatible with upstream nodes (spec §1.5, §14)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.maint_notifications import MaintNotificationsConfig
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from obscura.aio import raise_if_cancelling
from obscura.config import Settings
from obscura.coord.base import (
    CoordinationError,
    Coordinator,
    EventCallback,
    ResyncCallback,
    Subscription,
    checked_ttl_s,
    ticket_key,
)
from obscura.coord.pipeline import CommandPipeline
from obscura.coord.resp import RespError, RespProtocol, encode_command, encode_publish, open_connection
from obscura.coord.router import LocalRouter
from obscura.coord.wire import (
    channel_name,
    channel_pattern,
    decode_event,
    encode_event,
    member,
    parse_device_id,
)

__all__ = ["RedisCoordinator"]

log = logging.getLogger(__name__)

# Spec §6.3: ZRANGEBYSCORE the due jobs, then push each one's score to the end of its lease, in
# one atomic script so two workers (on any nodes, Rust or Python) never lease the same job.
# KEYS[1] = queue, ARGV = now, limit, lease_until (same argument order as upstream).
_LEASE_LUA = """
local jobs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(jobs) do
    redis.call('ZADD', KEYS[1], ARGV[3], job)
end
return jobs
"""


class RedisCoordinator(Coordinator):
    """Coordinator on Redis: the per-message commands and the subscriber on the lean RESP client
    (``obscura.coord.resp``), the rare ones (tickets, the lease script) on ``redis.asyncio``.

    One pipelining connection for the per-request commands (reconnected on demand), one pooled
    redis-py client (socket timeouts on every call) and one dedicated subscriber connection with
    a single ``PSUBSCRIBE <prefix>*`` (spec §1.5). The listener task owned by this object
    reconnects forever with capped exponential backoff (decisions §4.2) and fires the resync
    callbacks after every re-subscribe, because events published meanwhile are lost.
    Push-queue scores use the injectable ``clock`` (unix seconds), like upstream's node clock.
    """

    def __init__(self, settings: Settings, url: str | None = None, *,
                 clock: Callable[[], float] = time.time,
                 command_timeout_s: float = 2.0,
                 start_timeout_s: float = 10.0,
                 health_check_s: float = 5.0,
                 max_connections: int = 64) -> None:
        url = url if url is not None else settings.pubsub_url
        if not url:
            raise ValueError("RedisCoordinator needs a Redis URL (OBSCURA_PUBSUB_URL)")
        self._url = _normalize_url(url)
        self._clock = clock
        self._prefix = settings.notifications_channel_prefix
        self._prefix_bytes = self._prefix.encode()
        self._pattern = channel_pattern(self._prefix)
        self._queue_key = settings.notifications_push_queue_key
        self._min_backoff_s = float(settings.pubsub_min_backoff_secs)
        self._max_backoff_s = float(settings.pubsub_max_backoff_secs)
        self._command_timeout_s = command_timeout_s
        self._start_timeout_s = start_timeout_s
        self._health_check_s = health_check_s
        self._max_connections = max_connections
        self._router = LocalRouter()
        self._cmd: aioredis.Redis | None = None
        self._sub: RespProtocol | None = None  # the subscriber connection, while there is one
        self._lease_script: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._ever_subscribed = False
        self._attempt = 0
        self._closed = False
        self._pipe = CommandPipeline(self._url, command_timeout_s)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._listener is not None or self._closed:
            raise CoordinationError("coordinator already started or closed")
        timeouts = {"socket_timeout": self._command_timeout_s,
                    "socket_connect_timeout": self._command_timeout_s}
        # One retry on a dropped pooled connection; a timeout is not retried because the
        # command (GETDEL, the lease script) may already have run. No CLIENT SETINFO, whose
        # library version redis-py reads from the package metadata on disk for every new
        # connection (a synchronous ~2 ms) before two more round trips, and no maintenance
        # notification handshake (Redis before 7.2 refuses both): 2.9 -> 0.9 ms per connection
        # while the pool grows.
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url, max_connections=self._max_connections, timeout=self._command_timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)), driver_info=None,
            maint_notifications_config=MaintNotificationsConfig(enabled=False), **timeouts)
        self._cmd = aioredis.Redis.from_pool(pool)
        self._lease_script = self._cmd.register_script(_LEASE_LUA)
        self._listener = asyncio.create_task(self._listen_forever(), name="coord-redis-listener")
        try:
            await asyncio.wait_for(self._subscribed.wait(), self._start_timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise CoordinationError("could not subscribe to Redis in time") from None

    async def close(self) -> None:
        self._closed = True
        self._pipe.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            # Bounded, in case a cancellation gets lost: the loop then sees _closed on its next turn.
            done, _ = await asyncio.wait({listener}, timeout=self._command_timeout_s + self._health_check_s)
            if not done:
                log.warning("bus subscriber did not stop in time")
        if self._cmd is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._cmd.aclose(), self._command_timeout_s)
        self._cmd = None
        self._subscribed.clear()
        self._router.clear()

    async def ping(self) -> None:
        if not self._subscribed.is_set():
            # Without the subscriber this node gets no wake-ups: not ready (spec §2.15).
            raise CoordinationError("bus subscriber is not connected")
        await self._batched(b"PING")

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    # -- bus -----------------------------------------------------------------------------------
    async def publish(self, device_id: uuid.UUID, event: int) -> None:
        # Always through Redis, even for a device on this node (spec §1.5).
        await self._batched(b"PUBLISH", channel_name(self._prefix, device_id), encode_event(event))

    async def publish_many(self, items: Iterable[tuple[uuid.UUID, int]]) -> None:
        commands = self._publishes(items)
        if commands:
            await self._queue(commands)

    def _publishes(self, items: Iterable[tuple[uuid.UUID, int]]) -> list[bytes]:
        """Encoded PUBLISH commands (the pipeline takes encoded commands as they are)."""
        prefix = self._prefix
        return [encode_publish(channel_name(prefix, d), encode_event(e)) for d, e in items]

    # -- the per-request commands: one pipeline in flight (obscura/coord/pipeline.py) -------------
    async def _batched(self, *args: Any) -> Any:
        """One command through the shared pipeline; its reply."""
        return (await self._queue([args]))[0]

    def _queue(self, commands: Sequence[tuple | bytes]) -> asyncio.Future[list[Any]]:
        self._client()  # raises CoordinationError when not started
        return self._pipe.queue(commands)

    def subscribe(self, device_id: uuid.UUID, callback: EventCallback) -> Subscription:
        if not isinstance(device_id, uuid.UUID):
            raise TypeError("device id must be a uuid.UUID")
        return self._router.subscribe(device_id, callback)

    def on_resync(self, callback: ResyncCallback) -> Callable[[], None]:
        return self._router.on_resync(callback)

    # -- tickets -------------------------------------------------------------------------------
    async def put_ticket(self, ticket: str, device_id: uuid.UUID, ttl_s: int) -> None:
        async with self._errors():
            await self._client().set(ticket_key(ticket), member(device_id),
                                     ex=checked_ttl_s(ttl_s))

    async def take_ticket(self, ticket: str) -> bytes | None:
        # GETDEL: one atomic step, so a ticket works once even under a race (decisions §4.3).
        async with self._errors():
            return await self._client().getdel(ticket_key(ticket))

    # -- idempotency ---------------------------------------------------------------------------
    async def get_idempotent(self, key: str) -> bytes | None:
        return await self._batched(b"GET", key)

    async def put_idempotent(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._batched(*_set_ex(key, value, ttl_s))

    # -- push queue ----------------------------------------------------------------------------
    async def schedule_push(self, device_ids: Iterable[uuid.UUID], delay_s: float) -> None:
        command = self._zadd(device_ids, delay_s)
        if command is not None:
            await self._batched(*command)

    def _zadd(self, device_ids: Iterable[uuid.UUID], delay_s: float) -> tuple | None:
        due_at = self._clock() + float(delay_s)
        members = {member(d): None for d in device_ids}  # ordered, without repeats
        if not members:
            return None
        args: list[Any] = [b"ZADD", self._queue_key, b"NX"]  # spec §6.3: NX
        for m in members:
            args += (due_at, m)
        return tuple(args)

    # -- a send's writes after its commit --------------------------------------------------------
    async def after_send(self, wakeups: Sequence[tuple[uuid.UUID, int]], push_devices: Collection[uuid.UUID],
                         push_delay_s: float, cache: tuple[str, bytes, int],
                         ) -> tuple[CoordinationError | None, CoordinationError | None, CoordinationError | None]:
        """All three parts queued in the same tick, so they share one pipeline and one round trip
        (awaited one after the other they took three)."""
        set_command = _set_ex(*cache)
        zadd = self._zadd(push_devices, push_delay_s)
        try:
            self._client()  # raises CoordinationError when not started
        except CoordinationError as exc:
            return exc, exc, exc
        futures = [
            self._queue(self._publishes(wakeups)) if wakeups else None,
            self._queue([zadd]) if zadd is not None else None,
            self._queue([set_command]),
        ]
        outcomes: list[CoordinationError | None] = []
        try:
            for future in futures:
                try:
                    if future is not None:
                        await future
                    outcomes.append(None)
                except CoordinationError as exc:
                    outcomes.append(exc)
        finally:
            _consume([f for f in futures if f is not None])  # cancelled caller: nothing left unread
        return outcomes[0], outcomes[1], outcomes[2]

    async def cancel_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        await self._zrem([member(d) for d in device_ids])

    async def complete_push(self, device_ids: Iterable[uuid.UUID]) -> None:
        await self._zrem([member(d) for d in device_ids])

    async def _zrem(self, members: list[str]) -> None:
        if members:
            await self._batched(b"ZREM", self._queue_key, *members)

    async def lease_push_jobs(self, limit: int, visibility_s: float) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        now = self._clock()
        self._client()  # raises CoordinationError when not started
        async with self._errors():
            raw = await self._lease_script(keys=[self._queue_key],
                                           args=[repr(now), int(limit), repr(now + visibility_s)])
        leased: list[uuid.UUID] = []
        junk: list[bytes] = []
        for item in raw:
            device_id = parse_device_id(item.decode("ascii", "replace"))
            if device_id is None:
                junk.append(item)
            else:
                leased.append(device_id)
        if junk:
            # Not a device id: it could never be delivered, so drop it instead of re-leasing it
            # every visibility period forever.
            async with self._errors():
                await self._client().zrem(self._queue_key, *junk)
        return leased

    async def push_due_at(self, device_id: uuid.UUID) -> float | None:
        async with self._errors():
            return await self._client().zscore(self._queue_key, member(device_id))

    # -- internals -----------------------------------------------------------------------------
    def _client(self) -> aioredis.Redis:
        if self._cmd is None:
            raise CoordinationError("coordinator is not started or already closed")
        return self._cmd

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise CoordinationError(f"redis: {type(exc).__name__}") from exc

    async def _listen_forever(self) -> None:
        """Subscribe, dispatch, and on any failure back off and do it again, until closed."""
        while not self._closed:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                raise_if_cancelling()
                self._subscribed.clear()
                log.warning("bus subscriber lost (%s); reconnecting", type(exc).__name__)
            delay = self._backoff_s(self._attempt)
            self._attempt += 1
            await asyncio.sleep(delay)

    def _backoff_s(self, attempt: int) -> float:
        """Capped exponential backoff with jitter between min and max (spec §1.5 settings)."""
        base = self._min_backoff_s if self._min_backoff_s > 0 else 0.05
        delay = min(self._max_backoff_s, base * (2 ** min(attempt, 32)))
        return max(self._min_backoff_s, delay * random.uniform(0.75, 1.0))

    async def _listen_once(self) -> None:
        proto = await open_connection(self._url, self._command_timeout_s, on_push=self._on_push)
        self._sub = proto
        try:
            proto.send(encode_command((b"PSUBSCRIBE", self._pattern)), 0)  # replies are pushes
            idle_polls, seen = 0, -1
            while not self._closed:
                done, _ = await asyncio.wait((proto.closed,), timeout=self._health_check_s)
                raise_if_cancelling()
                if done:
                    raise ConnectionError("subscriber connection lost")
                if proto.received != seen:
                    seen, idle_polls = proto.received, 0
                    continue
                # Quiet line: PING it; a second silent period means a dead (half-open) link.
                idle_polls += 1
                if idle_polls >= 2:
                    raise ConnectionError("subscriber connection unresponsive")
                proto.send(encode_command((b"PING",)), 0)
        finally:
            self._sub = None
            proto.abort()

    def _on_push(self, reply: Any) -> None:
        """A reply on the subscriber connection: pmessage, psubscribe confirmation or pong."""
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"pmessage" and len(reply) == 4:
                self._on_pmessage(reply[2], reply[3])
            elif kind == b"psubscribe":
                self._on_subscribed()
        elif isinstance(reply, RespError):
            log.warning("bus subscriber got an error reply; reconnecting")
            self._subscribed.clear()
            if self._sub is not None:
                self._sub.abort()

    def _on_subscribed(self) -> None:
        self._attempt = 0
        self._subscribed.set()
        if self._ever_subscribed:
            log.info("bus subscriber reconnected; resyncing local sessions")
            self._router.fire_resync()
        self._ever_subscribed = True

    def _on_pmessage(self, channel: bytes, data: bytes) -> None:
        # Anything that is not {prefix}{uuid} with a known first byte is ignored (spec §1.5).
        if not isinstance(channel, bytes) or not channel.startswith(self._prefix_bytes):
            return
        event = decode_event(data) if isinstance(data, bytes) else None
        if event is None:
            return
        try:
            suffix = channel[len(self._prefix_bytes):].decode("ascii")
        except UnicodeDecodeError:
            return
        device_id = parse_device_id(suffix)
        if device_id is not None:
            self._router.dispatch(device_id, event)


def _normalize_url(url: str) -> str:
    """Accept ``valkey://`` (allowed by config) as the Redis protocol it is."""
    if url.startswith("valkey://"):
        return "redis://" + url[len("valkey://"):]
    if url.startswith("valkeys://"):
        return "rediss://" + url[len("valkeys://"):]
    return url


def _set_ex(key: str, value: bytes, ttl_s: int) -> tuple:
    return (b"SET", key, bytes(value), b"EX", checked_ttl_s(ttl_s))


def _consume(futures: list[asyncio.Future]) -> None:
    """Nobody waits for these replies any more: mark outcomes as seen and cancel the rest (a
    reply that still arrives is dropped; no "exception was never retrieved" when the link dies)."""
    for f in futures:
        if not f.done():
            f.cancel()
        elif not f.cancelled():
            f.exception()
