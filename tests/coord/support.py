"""Helpers for the coordination tests: a fake clock, an event collector, backends per test."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from obscura.config import Settings, load_settings
from obscura.coord import Coordinator, MemoryCoordinator
from obscura.coord.redis import RedisCoordinator
from tests.fixtures.redis import unique_redis_prefix


class FakeClock:
    """Unix-seconds clock that moves only when told; starts at the real time for sane scores."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Collector:
    """A subscription callback that records events and lets a test await them."""

    def __init__(self) -> None:
        self.events: list[int] = []
        self.tasks: list[asyncio.Task | None] = []
        self._changed = asyncio.Event()

    def __call__(self, event: int) -> None:
        self.events.append(event)
        self.tasks.append(asyncio.current_task())
        self._changed.set()

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[int]:
        async with asyncio.timeout(timeout_s):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


def coord_settings(**overrides: object) -> Settings:
    """Settings with a unique channel prefix and queue key, so tests can share one Redis."""
    prefix = unique_redis_prefix()
    values: dict[str, object] = {
        "notifications_channel_prefix": f"{prefix}user:",
        "notifications_push_queue_key": f"{prefix}jobs:push_notifications",
        "pubsub_min_backoff_secs": 0,
        "pubsub_max_backoff_secs": 1,
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


@dataclass
class CoordEnv:
    """One backend under test: a factory for peers sharing state, and how to let time pass."""

    kind: str
    settings: Settings
    clock: FakeClock
    url: str | None = None
    made: list[Coordinator] = field(default_factory=list)

    async def make(self) -> Coordinator:
        if self.kind == "memory":
            # One process has one memory coordinator: peers share it, as sessions would.
            if self.made:
                return self.made[0]
            coord: Coordinator = MemoryCoordinator(self.settings, clock=self.clock)
        else:
            coord = RedisCoordinator(self.settings, self.url, clock=self.clock)
        await coord.start()
        self.made.append(coord)
        return coord

    async def peers(self, count: int) -> list[Coordinator]:
        return [await self.make() for _ in range(count)]

    async def let_time_pass(self, seconds: float) -> None:
        """Fake time for memory TTLs; Redis expires keys on its own clock, so really wait."""
        self.clock.advance(seconds)
        if self.kind == "redis":
            await asyncio.sleep(seconds + 0.25)

    async def close(self) -> None:
        for coord in self.made:
            await coord.close()
        if self.url is not None:
            await drop_keys(self.url, self.settings.notifications_push_queue_key)


async def drop_keys(url: str, *keys: str) -> None:
    """Delete this test's own keys on a possibly shared server (never FLUSHALL)."""
    client = aioredis.Redis.from_url(url, socket_timeout=5)
    try:
        await client.delete(*keys)
    finally:
        await client.aclose()
