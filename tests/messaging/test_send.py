"""POST /v1/messages: validation, failures, idempotency, duplicates, limits (spec §2.10, §5.1-5.3;
upstream integration_messaging, the REST half)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from obscura._proto import obscura_pb2 as pb
from tests.fixtures.server import running_app
from tests.support.users import bearer, register, register_user
from tests.support.ws import send, submission

E = pb.SendMessageResponse.ErrorCode


async def _count(app, device_id: uuid.UUID) -> int:
    async with app.database.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", device_id)


async def test_send_stores_and_returns_empty_body(http, app):
    alice, bob = await register_user(http), await register_user(http)
    body = pb.SendMessageRequest(messages=[submission(bob.device_id, b"hi")]).SerializeToString()
    res = await http.post("/v1/messages", content=body,
                          headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 200
    assert res.content == b""
    assert res.headers["content-type"] == "application/octet-stream"
    async with app.database.acquire() as conn:
        row = await conn.fetchrow("SELECT sender_id, sender_device_id, content, expires_at - created_at AS ttl "
                                  "FROM messages WHERE device_id = $1", bob.device_id)
    assert (row["sender_id"], row["sender_device_id"], row["content"]) == (alice.user_id, alice.device_id, b"hi")
    assert row["ttl"].days == 30


async def test_recipient_not_found(http):
    alice = await register_user(http)
    sid = uuid.uuid4().bytes
    resp = await send(http, alice, submission(uuid.uuid4(), b"x", sid))
    assert len(resp.failed_submissions) == 1
    failure = resp.failed_submissions[0]
    assert (failure.submission_id, failure.error_code, failure.error_message) == (sid, E.ERROR_CODE_INVALID_DEVICE, "Device not found")


async def test_structural_failures_in_order_then_existence_failures(http, app):
    alice, bob = await register_user(http), await register_user(http)
    s_missing_device = uuid.uuid4().bytes
    resp = await send(http, alice,
                      submission(uuid.uuid4(), b"x", s_missing_device),          # existence failure
                      submission(bob.device_id, b"x", b"abc"),                    # bad submission id
                      submission(b"\x01\x02\x03", b"x", b"S" * 16),               # bad device id
                      submission(bob.device_id, b"", b"M" * 16),                  # missing payload
                      submission(bob.device_id, b"ok"))
    got = [(f.submission_id, f.error_code, f.error_message) for f in resp.failed_submissions]
    assert got == [
        (b"abc", E.ERROR_CODE_MALFORMED_SUBMISSION_ID, "Invalid submission_id UUID bytes (expected 16)"),
        (b"S" * 16, E.ERROR_CODE_MALFORMED_DEVICE_ID, "Invalid device_id UUID bytes (expected 16)"),
        (b"M" * 16, E.ERROR_CODE_MESSAGE_MISSING, "Missing message payload"),
        (s_missing_device, E.ERROR_CODE_INVALID_DEVICE, "Device not found"),
    ]
    assert await _count(app, bob.device_id) == 1


async def test_batch_partial_success(http, app):
    alice, bob, charlie = await register_user(http), await register_user(http), await register_user(http)
    resp = await send(http, alice, submission(bob.device_id, b"1"), submission(uuid.uuid4(), b"2"),
                      submission(charlie.device_id, b"3"))
    assert [f.error_code for f in resp.failed_submissions] == [E.ERROR_CODE_INVALID_DEVICE]
    assert await _count(app, bob.device_id) == 1 and await _count(app, charlie.device_id) == 1


async def test_empty_batch_is_200_empty(http):
    alice = await register_user(http)
    resp = await send(http, alice)
    assert list(resp.failed_submissions) == []


async def test_malformed_protobuf_is_400(http):
    alice = await register_user(http)
    res = await http.post("/v1/messages", content=b"\x00\x01\x02",
                          headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 400
    assert res.json()["error"].startswith("Invalid SendMessageRequest protobuf: ")


async def test_batch_too_large_is_413_json(settings_factory):
    async with running_app(settings_factory(messaging_send_batch_limit=5)) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            alice, bob = await register_user(http), await register_user(http)
            body = pb.SendMessageRequest(messages=[submission(bob.device_id, b"x") for _ in range(6)])
            res = await http.post("/v1/messages", content=body.SerializeToString(),
                                  headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
            assert res.status_code == 413 and res.json() == {"error": "Payload too large"}


async def test_idempotency_replays_identical_bytes(http, app):
    alice, bob = await register_user(http), await register_user(http)
    key = str(uuid.uuid4())
    body = pb.SendMessageRequest(messages=[submission(bob.device_id, b"once"),
                                           submission(uuid.uuid4(), b"fails")]).SerializeToString()
    headers = {**bearer(alice.token), "Idempotency-Key": key}
    first = await http.post("/v1/messages", content=body, headers=headers)
    # Any UUID spelling of the same key hits the same cache entry, even with a different body.
    for spelling in (key.upper(), key.replace("-", ""), "{" + key + "}", "urn:uuid:" + key):
        again = await http.post("/v1/messages", content=b"\x00garbage",
                                headers={**bearer(alice.token), "Idempotency-Key": spelling})
        assert again.status_code == 200 and again.content == first.content and first.content != b""
    assert await _count(app, bob.device_id) == 1


async def test_idempotency_key_is_scoped_to_the_sending_device(http, app):
    alice, eve, bob = await register_user(http), await register_user(http), await register_user(http)
    key = str(uuid.uuid4())
    await send(http, alice, submission(bob.device_id, b"from alice"), key=key)
    await send(http, eve, submission(bob.device_id, b"from eve"), key=key)  # not Alice's cached reply
    assert await _count(app, bob.device_id) == 2


@pytest.mark.parametrize("header,message", [
    (None, "Missing idempotency-key header"),
    ("not-a-uuid", "Invalid idempotency-key: "),
])
async def test_idempotency_key_errors(http, header, message):
    alice = await register_user(http)
    headers = bearer(alice.token)
    if header is not None:
        headers["Idempotency-Key"] = header
    res = await http.post("/v1/messages", content=b"", headers=headers)
    assert res.status_code == 400 and res.json()["error"].startswith(message)


async def test_duplicate_submission_ids_are_silently_skipped(http, app):
    alice, bob = await register_user(http), await register_user(http)
    sid = uuid.uuid4().bytes
    resp = await send(http, alice, submission(bob.device_id, b"a", sid), submission(bob.device_id, b"b", sid))
    assert list(resp.failed_submissions) == []
    resp = await send(http, alice, submission(bob.device_id, b"c", sid))
    assert list(resp.failed_submissions) == []
    assert await _count(app, bob.device_id) == 1


async def test_user_scoped_token_is_403_and_no_token_401(http):
    user = await register(http)
    res = await http.post("/v1/messages", content=b"", headers={**bearer(user.user_token),
                                                                "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 403 and res.json() == {"error": "Device-scoped token required"}
    res = await http.post("/v1/messages", content=b"", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 401


async def test_deleted_sender_device_gets_401_not_500(http):
    alice, bob = await register_user(http), await register_user(http)
    res = await http.delete(f"/v1/devices/{alice.device_id}", headers=bearer(alice.token))
    assert res.status_code == 200
    res = await http.post("/v1/messages", content=pb.SendMessageRequest(
        messages=[submission(bob.device_id, b"x")]).SerializeToString(),
        headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 401


async def test_body_over_limit_is_413(http):
    alice = await register_user(http)
    res = await http.post("/v1/messages", content=b"\x00" * (2 * 1024 * 1024 + 1),
                          headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 413


async def test_send_publishes_one_wakeup_and_one_push_job_per_device(http, app):
    alice, bob = await register_user(http), await register_user(http)
    events = []
    sub = app.coordinator.subscribe(bob.device_id, events.append)
    try:
        await send(http, alice, *[submission(bob.device_id, b"m%d" % i) for i in range(5)])
        import asyncio
        for _ in range(50):
            if events:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        assert events == [1]
        assert await app.coordinator.push_due_at(bob.device_id) is not None
        assert app.telemetry.value("obscura_messages_sent_total", {"status": "success"}) == 5
    finally:
        sub.close()
