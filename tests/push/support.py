"""Helpers for the push tests: devices straight in the database, workers wired to the fakes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg

from obscura.coord.base import Coordinator
from obscura.push.base import PushProvider
from obscura.push.fcm import FcmProvider, ServiceAccount
from obscura.services.push_tokens import PushTokenService
from obscura.store.postgres.pool import Database
from obscura.store.postgres.push_tokens import PgPushTokenRepo
from obscura.telemetry import Telemetry
from obscura.workers.push import PushWorker


async def new_device(pool: asyncpg.Pool, token: str | None = None, token_type: str = "fcm") -> uuid.UUID:
    """A user with one device (and optionally a push token), inserted directly."""
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')",
                           user_id, f"u{user_id.hex}")
        await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", device_id, user_id)
        if token is not None:
            await conn.execute("INSERT INTO push_tokens (device_id, token, token_type) VALUES ($1, $2, $3)",
                               device_id, token, token_type)
    return device_id


def token_service(pool: asyncpg.Pool) -> PushTokenService:
    return PushTokenService(PgPushTokenRepo(Database(pool)))


def fcm_provider(google, service_account, max_connections: int = 100) -> FcmProvider:
    return FcmProvider(ServiceAccount.from_file(str(service_account.path)), google.project, ttl_s=604800,
                       endpoint=google.url, token_uri=google.token_uri, timeout_s=5, max_connections=max_connections)


def make_worker(coordinator: Coordinator, pool: asyncpg.Pool, provider: PushProvider, *,
                telemetry: Telemetry | None = None, **overrides) -> PushWorker:
    options = dict(interval_s=0.05, concurrency=100, visibility_s=30, cleanup_interval_s=3600,
                   cleanup_batch_size=50, cleanup_capacity=256)
    options.update(overrides)
    return PushWorker(coordinator, token_service(pool), provider, telemetry or Telemetry(), **options)


async def eventually(predicate: Callable[[], object], timeout_s: float = 10.0, poll_s: float = 0.05) -> None:
    """Wait until ``predicate()`` (sync or async) is truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(poll_s)
