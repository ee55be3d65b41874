"""The push worker against real PostgreSQL, Redis and the fake FCM (upstream integration_push_worker,
integration_visibility_timeout and the worker parts of integration_notifications; spec §6.3)."""

from __future__ import annotations

import asyncio

import pytest

from obscura.coord import MemoryCoordinator
from obscura.coord.redis import RedisCoordinator
from obscura.push.base import PushProvider, PushResult, PushTarget
from obscura.telemetry import Telemetry
from tests.coord.support import FakeClock, coord_settings
from tests.push.support import eventually, fcm_provider, make_worker, new_device


@pytest.fixture(params=["memory", "redis"])
async def coord(request):
    """A coordinator on a fake clock, in-process or on Redis (same semantics, issue 6 §2)."""
    clock = FakeClock()
    settings = coord_settings()
    if request.param == "memory":
        c = MemoryCoordinator(settings, clock)
    else:
        c = RedisCoordinator(settings, request.getfixturevalue("redis_url"), clock=clock)
    await c.start()
    c.clock = clock
    try:
        yield c
    finally:
        await c.close()


async def _token_of(pool, device_id):
    return await pool.fetchval("SELECT token FROM push_tokens WHERE device_id = $1", device_id)


async def test_due_job_is_sent_once_and_completed(coord, db_pool, google, service_account):
    telemetry = Telemetry()
    device = await new_device(db_pool, "tok-deliver")
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account), telemetry=telemetry)
    await coord.schedule_push([device], 2)
    assert await worker.tick() == 0  # not due yet
    coord.clock.advance(2)
    assert await worker.tick() == 1
    await worker.wait_idle()
    assert google.sends_to("tok-deliver") == 1
    assert await coord.push_due_at(device) is None
    assert telemetry.value("obscura_push_notifications_sent_total") == 1
    await worker.provider.close()


async def test_job_of_a_device_without_token_is_removed(coord, db_pool, google, service_account):
    device = await new_device(db_pool)
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account))
    await coord.schedule_push([device], 0)
    assert await worker.tick() == 0
    assert await coord.push_due_at(device) is None
    coord.clock.advance(3600)
    assert await coord.lease_push_jobs(10, 0) == []
    assert google.sends == []
    await worker.provider.close()


async def test_visibility_timeout_retry(coord, db_pool, google, service_account):
    """A transient failure leaves the job leased (future score); after the lease it is retried."""
    telemetry = Telemetry()
    device = await new_device(db_pool, "tok-retry")
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account), telemetry=telemetry, visibility_s=2)
    google.fcm_replies += [(503, b'{"error":{"status":"UNAVAILABLE"}}'), (429, b"{}")]
    await coord.schedule_push([device], 0)
    await worker.tick()
    await worker.wait_idle()
    assert await coord.push_due_at(device) == coord.clock.now + 2  # still there, hidden by the lease
    assert telemetry.value("obscura_push_notification_errors_total", {"reason": "other"}) == 1
    assert await worker.tick() == 0  # leased: invisible until the lease ends
    coord.clock.advance(3)
    await worker.tick()
    await worker.wait_idle()
    assert telemetry.value("obscura_push_notification_errors_total", {"reason": "quota_exceeded"}) == 1
    assert await coord.push_due_at(device) == coord.clock.now + 2
    coord.clock.advance(3)
    await worker.tick()
    await worker.wait_idle()
    assert await coord.push_due_at(device) is None
    assert google.sends_to("tok-retry") == 3
    assert telemetry.value("obscura_push_notifications_sent_total") == 1
    await worker.provider.close()


class RaisingProvider(PushProvider):
    async def send(self, target: PushTarget) -> PushResult:
        raise RuntimeError("provider bug")


async def test_a_raising_provider_counts_as_other(coord, db_pool):
    telemetry = Telemetry()
    device = await new_device(db_pool, "tok-raise")
    worker = make_worker(coord, db_pool, RaisingProvider(), telemetry=telemetry)
    await coord.schedule_push([device], 0)
    await worker.tick()
    await worker.wait_idle()
    assert await coord.push_due_at(device) == coord.clock.now + 30
    assert telemetry.value("obscura_push_notification_errors_total", {"reason": "other"}) == 1


async def test_unregistered_tokens_are_deleted_by_the_running_worker(coord, db_pool, google, service_account):
    telemetry = Telemetry()
    google.default_reply = (404, b'{"error":{"status":"NOT_FOUND"}}')
    device = await new_device(db_pool, "tok-dead")
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account), telemetry=telemetry,
                         cleanup_interval_s=0.2)
    await coord.schedule_push([device], 0)
    worker.start()
    try:
        await eventually(lambda: _gone(db_pool, device), timeout_s=10)
    finally:
        await worker.stop()
    assert await coord.push_due_at(device) is None
    assert telemetry.value("obscura_push_invalid_tokens_total") == 1


async def _gone(pool, device):
    return await _token_of(pool, device) is None


async def test_invalid_tokens_flush_at_batch_size_and_at_shutdown(coord, db_pool, google, service_account):
    google.default_reply = (400, b'{"error":{"status":"INVALID_ARGUMENT","details":[{"fieldViolations":'
                                 b'[{"field":"message.token"}]}]}}')
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account), cleanup_batch_size=3)
    first = [await new_device(db_pool, f"tok-batch-{i}") for i in range(3)]
    await coord.schedule_push(first, 0)
    worker.start()
    try:
        await eventually(lambda: _all_gone(db_pool, first))  # the batch filled: no interval wait
        later = [await new_device(db_pool, f"tok-late-{i}") for i in range(2)]
        await coord.schedule_push(later, 0)
        await eventually(lambda: _all_jobs_gone(coord, later))
        await worker.wait_idle()
        for _ in range(5):
            await asyncio.sleep(0)
        assert [await _token_of(db_pool, d) for d in later] == ["tok-late-0", "tok-late-1"]  # batch of 2 < 3
    finally:
        await worker.stop()
    assert await _all_gone(db_pool, later)  # flushed at shutdown


async def _all_gone(pool, devices):
    return all([await _token_of(pool, d) is None for d in devices])


async def _all_jobs_gone(coord, devices):
    return all([await coord.push_due_at(d) is None for d in devices])


async def test_in_flight_sends_are_bounded_by_concurrency(coord, db_pool, google, service_account):
    google.fcm_delay_s = 0.2
    devices = [await new_device(db_pool, f"tok-conc-{i}") for i in range(10)]
    worker = make_worker(coord, db_pool, fcm_provider(google, service_account), concurrency=2)
    await coord.schedule_push(devices, 0)
    worker.start()
    try:
        await eventually(lambda: len(google.sends) == 10, timeout_s=20)
        await eventually(lambda: _all_jobs_gone(coord, devices))
    finally:
        await worker.stop()
    assert 1 <= google.server.peak_active <= 2
    assert 1 <= worker.peak_in_flight <= 2


async def test_exactly_one_delivery_with_ten_competing_workers(redis_url, db_pool, google, service_account):
    settings = coord_settings()
    coords = [RedisCoordinator(settings, redis_url) for _ in range(10)]
    workers = []
    try:
        for c in coords:
            await c.start()
        devices = [await new_device(db_pool, f"tok-race-{i}") for i in range(20)]
        workers = [make_worker(c, db_pool, fcm_provider(google, service_account), interval_s=0.01) for c in coords]
        for w in workers:
            w.start()
        await coords[0].schedule_push(devices, 0)
        await eventually(lambda: _all_jobs_gone(coords[0], devices))
        for w in workers:
            await w.wait_idle()
    finally:
        for w in workers:
            await w.stop()
        for c in coords:
            await c.close()
    assert sorted(google.sends_to(f"tok-race-{i}") for i in range(20)) == [1] * 20
    assert len(google.sends) == 20


async def test_stop_cancels_in_flight_sends_and_keeps_their_jobs(db_pool, google, service_account):
    clock = FakeClock()
    coord = MemoryCoordinator(coord_settings(), clock)
    google.fcm_delay_s = 30
    device = await new_device(db_pool, "tok-slow")
    provider = fcm_provider(google, service_account)
    worker = make_worker(coord, db_pool, provider)
    await coord.schedule_push([device], 0)
    worker.start()
    await eventually(lambda: len(google.sends) == 1)
    await worker.stop()
    assert await coord.push_due_at(device) == clock.now + 30  # retried by whoever leases it next
    assert provider._client.is_closed
