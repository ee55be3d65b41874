"""Push across real server processes sharing PostgreSQL and Redis (upstream integration_full_system
and the competing-workers test of integration_notifications; spec §6.3)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from obscura.coord.redis import RedisCoordinator
from tests.coord.support import coord_settings
from tests.fixtures.redis import unique_redis_prefix
from tests.push.support import eventually, fcm_provider, make_worker
from tests.support.users import register_user
from tests.support.ws import connect, send, send_text, submission

INVALID_DEVICE = 1


def _node_env(database_url, redis_url, prefix, google, service_account, data_dir) -> dict[str, str]:
    return {
        "OBSCURA_DATABASE_URL": database_url, "OBSCURA_PUBSUB_URL": redis_url, "OBSCURA_DATA_DIR": data_dir,
        "OBSCURA_NOTIFICATIONS_CHANNEL_PREFIX": prefix, "OBSCURA_NOTIFICATIONS_PUSH_QUEUE_KEY": prefix + "jobs",
        "OBSCURA_NOTIFICATIONS_PUSH_DELAY_SECS": "2", "OBSCURA_NOTIFICATIONS_WORKER_INTERVAL_SECS": "1",
        "OBSCURA_FCM_PROJECT_ID": google.project, "OBSCURA_FCM_CREDENTIALS_FILE": str(service_account.path),
        "OBSCURA_FCM_ENDPOINT": google.url, "OBSCURA_FCM_TOKEN_URI": google.token_uri,
        "OBSCURA_AUTH_JWT_SECRET": "push-cluster-test-secret-0123456789abcdef",
        "OBSCURA_STORAGE_BACKEND": "memory", "OBSCURA_DATABASE_MIN_CONNECTIONS": "1",
        "OBSCURA_RATE_LIMIT_PER_SECOND": "10000", "OBSCURA_RATE_LIMIT_BURST": "10000",
        "OBSCURA_RATE_LIMIT_AUTH_PER_SECOND": "10000", "OBSCURA_RATE_LIMIT_AUTH_BURST": "10000",
    }


async def test_one_push_per_burst_with_ten_workers_on_two_nodes(server_process, database_url, redis_url, db_pool,
                                                                google, service_account, tmp_path):
    prefix = unique_redis_prefix()
    nodes = [server_process(_node_env(database_url, redis_url, prefix, google, service_account,
                                      str(tmp_path / f"n{i}"))) for i in range(2)]
    for node in nodes:
        await asyncio.to_thread(node.wait_ready, 60)
        assert "push providers: fcm on, apns off" in node.output()  # configured from OBSCURA_FCM_*
    # Eight more workers in this process on the same queue: ten compete for every job.
    coords = [RedisCoordinator(coord_settings(notifications_push_queue_key=prefix + "jobs"), redis_url)
              for _ in range(8)]
    workers = []
    try:
        for c in coords:
            await c.start()
        workers = [make_worker(c, db_pool, fcm_provider(google, service_account), interval_s=0.05) for c in coords]
        for w in workers:
            w.start()
        async with httpx.AsyncClient(base_url=nodes[0].url, timeout=10) as a, \
                httpx.AsyncClient(base_url=nodes[1].url, timeout=10) as b:
            await _full_flow(a, b, coords[0], google)
    finally:
        for w in workers:
            await w.stop()
        for c in coords:
            await c.close()


async def _full_flow(a: httpx.AsyncClient, b: httpx.AsyncClient, coord: RedisCoordinator, google) -> None:
    sender, receiver = await register_user(a), await register_user(a)
    token = f"token:{receiver.device_id}"
    assert (await b.put("/v1/push-tokens", json={"token": token}, headers=receiver.auth)).status_code == 200
    batch = [submission(receiver.device_id, b"m%d" % i) for i in range(49)] + [submission(uuid.uuid4(), b"lost")]
    result = await send(a, sender, *batch)
    assert [f.error_code for f in result.failed_submissions] == [INVALID_DEVICE]
    assert await coord.push_due_at(receiver.device_id) is not None

    await eventually(lambda: google.sends_to(token) >= 1, timeout_s=15)
    await eventually(lambda: _no_job(coord, receiver.device_id))
    assert google.sends_to(token) == 1  # one wake-up for the burst, by exactly one of ten workers

    client = await connect(b, receiver)
    try:
        envelopes = await client.envelopes_for(49)
        assert {e.sender_id for e in envelopes} == {sender.user_id.bytes}
        assert {e.sender_device_id for e in envelopes} == {sender.device_id.bytes}
        client.ack(*(e.id for e in envelopes))
        assert await coord.push_due_at(receiver.device_id) is None
        await send_text(a, sender, receiver, b"live")
        live = await client.next_envelope()
        client.ack(live.id)
        await eventually(lambda: _no_job(coord, receiver.device_id))
        await asyncio.sleep(3)  # past the push delay and several worker ticks
    finally:
        await client.close()
    assert google.sends_to(token) == 1


async def _no_job(coord, device_id) -> bool:
    return await coord.push_due_at(device_id) is None
