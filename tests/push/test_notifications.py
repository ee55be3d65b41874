"""Push end to end through a running node (upstream integration_notifications and the push part of
integration_prekey_signaling; spec §1.4 steps 5, 9, 10, §3.6, §6.3; §13 items 14 and 18)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.fixtures.server import running_app
from tests.push.fakes import FakeApns
from tests.push.support import eventually
from tests.support.users import register_user
from tests.support.ws import connect, send, send_text, submission


@pytest.fixture
def push_node(settings_factory, google, service_account):
    """A node (in-process coordination) whose FCM is the fake; APNs too when given a fake."""
    def make(delay_s: int, apns: FakeApns | None = None, apns_key=None, **extra):
        options = dict(fcm_project_id=google.project, fcm_credentials_file=str(service_account.path),
                       fcm_endpoint=google.url, fcm_token_uri=google.token_uri,
                       notifications_push_delay_secs=delay_s, notifications_worker_interval_secs=1)
        if apns is not None:
            options.update(apns_key_file=str(apns_key[0]), apns_key_id="TEST123456", apns_team_id="TEAM123456",
                           apns_topic="org.obscura.app", apns_endpoint=apns.url)
        options.update(extra)
        return running_app(settings_factory(**options))
    return make


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=10)


async def _with_token(http, user, token: str, kind: str | None = None):
    body = {"token": token} if kind is None else {"token": token, "type": kind}
    assert (await http.put("/v1/push-tokens", json=body, headers=user.auth)).status_code == 200
    return user


async def test_scheduled_push_delivery(push_node, google):
    async with push_node(1) as app, _client(app) as http:
        sender, receiver = await register_user(http), await register_user(http)
        await _with_token(http, receiver, f"token:{receiver.device_id}")
        await send_text(http, sender, receiver, b"hello")
        await eventually(lambda: google.sends_to(f"token:{receiver.device_id}") == 1)
        await eventually(lambda: _no_job(app, receiver.device_id))
        assert google.sends_to(f"token:{receiver.device_id}") == 1


async def _no_job(app, device_id) -> bool:
    return await app.coordinator.push_due_at(device_id) is None


async def test_job_is_keyed_by_device_and_cancelled_on_connect(push_node):
    """Upstream looks the job up under the user id, so its test passes vacuously (§13 item 18)."""
    async with push_node(10) as app, _client(app) as http:
        sender, receiver = await register_user(http), await register_user(http)
        await send_text(http, sender, receiver, b"hello")
        assert await app.coordinator.push_due_at(receiver.device_id) is not None
        assert await app.coordinator.push_due_at(receiver.user_id) is None
        client = await connect(http, receiver)
        try:
            await eventually(lambda: _no_job(app, receiver.device_id))
        finally:
            await client.close()


async def test_no_push_for_a_device_that_acks_in_time(push_node, google):
    async with push_node(2) as app, _client(app) as http:
        sender, receiver = await register_user(http), await register_user(http)
        await _with_token(http, receiver, "token-acks")
        client = await connect(http, receiver)
        try:
            await send_text(http, sender, receiver, b"hello")
            # Connected devices get a job too (§13 item 14): only the ACK cancels it.
            assert await app.coordinator.push_due_at(receiver.device_id) is not None
            env = await client.next_envelope()
            client.ack(env.id)
            await eventually(lambda: _no_job(app, receiver.device_id))
            await asyncio.sleep(3)  # past the delay plus a worker tick
        finally:
            await client.close()
        assert google.sends_to("token-acks") == 0


async def test_49_messages_coalesce_into_one_push(push_node, google):
    async with push_node(3) as app, _client(app) as http:
        sender, receiver = await register_user(http), await register_user(http)
        await _with_token(http, receiver, "token-burst")
        await asyncio.gather(*(send_text(http, sender, receiver, b"m%d" % i) for i in range(49)))
        await eventually(lambda: google.sends_to("token-burst") >= 1)
        await eventually(lambda: _no_job(app, receiver.device_id))
        assert google.sends_to("token-burst") == 1


async def test_prekey_low_schedules_a_push(push_node, google):
    async with push_node(0) as app, _client(app) as http:
        fetcher = await register_user(http)
        owner = await register_user(http, otpk_count=21)
        await _with_token(http, owner, f"token:{owner.user_id}")
        for _ in range(2):  # 21 -> 20 -> 19: below the threshold of 20
            res = await http.get(f"/v1/users/{owner.user_id}", headers=fetcher.auth)
            assert res.status_code == 200
        await eventually(lambda: google.sends_to(f"token:{owner.user_id}") >= 1)


async def test_android_and_ios_each_woken_through_their_own_provider(push_node, google, apns_key):
    async with FakeApns(apns_key[1]) as apns, push_node(1, apns, apns_key) as app, _client(app) as http:
        sender = await register_user(http)
        android, ios = await register_user(http), await register_user(http)
        await _with_token(http, android, "android-token", "fcm")
        await _with_token(http, ios, "ab" * 32, "apns")
        for _ in range(3):
            await send(http, sender, submission(android.device_id, b"x"), submission(ios.device_id, b"y"))
        await eventually(lambda: google.sends_to("android-token") == 1 and apns.sends_to("ab" * 32) == 1)
        await eventually(lambda: _no_job(app, android.device_id))
        await eventually(lambda: _no_job(app, ios.device_id))
        assert len(google.sends) == 1 and len(apns.requests) == 1
        assert apns.requests[0].headers["apns-topic"] == "org.obscura.app"


async def test_invalid_token_removed_end_to_end(push_node, google):
    google.default_reply = (404, b'{"error":{"status":"NOT_FOUND"}}')
    async with push_node(0, notifications_invalid_token_cleanup_interval_secs=1) as app, _client(app) as http:
        sender, receiver = await register_user(http), await register_user(http)
        await _with_token(http, receiver, "token-dead")
        await send_text(http, sender, receiver, b"hello")

        async def gone() -> bool:
            return await app.database.pool.fetchval(
                "SELECT count(*) FROM push_tokens WHERE device_id = $1", receiver.device_id) == 0
        await eventually(gone)
        assert app.telemetry.value("obscura_push_invalid_tokens_total") == 1


async def test_without_a_provider_pushes_are_logged_by_device_id_only(app, http, caplog):
    caplog.set_level(logging.INFO, logger="obscura")
    receiver = await register_user(http)
    await _with_token(http, receiver, "secret-log-token")
    await app.coordinator.schedule_push([receiver.device_id], 0)
    await eventually(lambda: _no_job(app, receiver.device_id))
    assert str(receiver.device_id) in caplog.text and "secret-log-token" not in caplog.text
    assert app.telemetry.value("obscura_push_notifications_sent_total") == 1
