"""Helpers for the device and key tests: DB inspection, inbox seeding, bus observation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from obscura._speedups import uuid7
from obscura.app import App


async def fetchval(app: App, sql: str, *args: Any) -> Any:
    async with app.database.acquire() as conn:
        return await conn.fetchval(sql, *args)


async def count_otpks(app: App, device_id: uuid.UUID) -> int:
    return await fetchval(app, "SELECT count(*) FROM one_time_pre_keys WHERE device_id = $1", device_id)


async def inbox_size(app: App, device_id: uuid.UUID) -> int:
    return await fetchval(app, "SELECT count(*) FROM messages WHERE device_id = $1", device_id)


async def seed_message(app: App, sender_id: uuid.UUID, sender_device: uuid.UUID, recipient_device: uuid.UUID) -> None:
    """A pending message, as POST /v1/messages would store it (spec §5.2)."""
    async with app.database.acquire() as conn:
        await conn.execute(
            "INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, now() + interval '1 day')",
            uuid7(), sender_id, sender_device, recipient_device, uuid.uuid4(), b"ciphertext")


class BusRecorder:
    """Every bus event of some devices, as seen by a local subscriber of the app's coordinator."""

    def __init__(self, app: App, *device_ids: uuid.UUID) -> None:
        self.events: list[tuple[uuid.UUID, int]] = []
        self._changed = asyncio.Event()
        self._subs = [app.coordinator.subscribe(d, self._callback(d)) for d in device_ids]

    def _callback(self, device_id: uuid.UUID):
        def record(event: int) -> None:
            self.events.append((device_id, event))
            self._changed.set()
        return record

    async def wait_for(self, item: tuple[uuid.UUID, int], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while item not in self.events:
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
