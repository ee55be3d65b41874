"""The state poller's product gauges, from the real database (issue 7 §2)."""

from __future__ import annotations

import uuid

from obscura.store.postgres.stats import StateRepo, pool_usage
from obscura.telemetry import Telemetry
from obscura.workers.state_poller import StatePoller
from tests.support.users import bearer, register_user


async def _insert_user_with_device(pool) -> None:
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')",
                           user_id, f"poll_{user_id.hex}")
        await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", device_id, user_id)


async def test_poll_sets_gauges_from_counts(app, http):
    telemetry = Telemetry()
    poller = StatePoller(StateRepo(app.database).counts, telemetry, 300)
    await poller.poll_once()
    users = telemetry.value("obscura_users_total")
    devices = telemetry.value("obscura_devices_total")
    attachments = telemetry.value("obscura_attachments_total_count")
    stored = telemetry.value("obscura_attachments_total_bytes")
    await _insert_user_with_device(app.database.pool)
    uploader = await register_user(http)
    for size in (1000, 2345):
        res = await http.post("/v1/attachments", content=b"a" * size, headers=bearer(uploader.token))
        assert res.status_code == 201, res.text
    res = await http.post("/v1/attachments", content=b"", headers=bearer(uploader.token))
    assert res.status_code == 400  # too small: a refused upload leaves no row and no bytes
    await poller.poll_once()
    assert telemetry.value("obscura_users_total") == users + 2
    assert telemetry.value("obscura_devices_total") == devices + 2
    assert telemetry.value("obscura_pending_messages_total") >= 0
    assert telemetry.value("obscura_attachments_total_count") == attachments + 2
    assert telemetry.value("obscura_attachments_total_bytes") == stored + 3345


async def test_failed_poll_is_counted_not_raised(app):
    telemetry = Telemetry()

    async def broken() -> dict[str, int]:
        raise ConnectionError("database gone")

    poller = StatePoller(broken, telemetry, 300)
    await poller.worker.run_once()
    assert telemetry.value("obscura_state_poller_errors_total") == 1
    assert telemetry.value("obscura_users_total") is None


async def test_pool_usage_reports_active_idle_and_max(app):
    async with app.database.acquire():
        # Taken in one go: background workers may grow the pool between two reads.
        usage, size = pool_usage(app.database), app.database.pool.get_size()
        assert usage["active"] >= 1
    assert usage["max"] == 10
    assert usage["active"] + usage["idle"] == size
