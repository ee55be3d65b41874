"""Signal keys over real HTTP and PostgreSQL: upstream's integration_keys (minus WebSocket) and §4.4."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest

from obscura.coord.base import Event
from tests.accounts.devices_support import BusRecorder, count_otpks, fetchval, inbox_size, seed_message
from tests.fixtures.server import running_app
from tests.support.signal_keys import IdentityKey, b64, key_bundle
from tests.support.users import bearer, register, register_user


def refill(identity: IdentityKey, *, spk_id: int, otpk_count: int = 0, otpk_start: int = 100) -> dict:
    """A refill body: no identityKey, SPK signed by the stored identity."""
    body = key_bundle(identity, spk_id=spk_id, otpk_count=otpk_count, otpk_start=otpk_start)
    del body["identityKey"], body["registrationId"]
    return body


@pytest.mark.parametrize("sign_bit", [0, 1])
@pytest.mark.parametrize("message_form", [33, 32], ids=["typescript_33_byte", "pure_math_32_byte"])
async def test_signature_formats_accepted(http, sign_bit, message_form):
    user = await register(http)
    identity = IdentityKey.with_sign_bit(sign_bit)
    res = await http.post("/v1/devices", json=key_bundle(identity, message_form=message_form),
                          headers=bearer(user.user_token))
    assert res.status_code == 201, res.text
    token = res.json()["token"]
    # The same forms work for a refill against the stored key.
    body = refill(identity, spk_id=2)
    body["signedPreKey"] = key_bundle(identity, spk_id=2, message_form=message_form)["signedPreKey"]
    res = await http.post("/v1/devices/keys", json=body, headers=bearer(token))
    assert res.status_code == 200 and res.content == b"" and "content-type" not in res.headers


async def test_key_limit_enforced(settings_factory):
    async with running_app(settings_factory(pre_keys_max=50)) as node:
        async with _client(node) as http:
            user = await register_user(http, otpk_count=40)
            body = refill(user.identity, spk_id=2)
            body["oneTimePreKeys"] = [{"keyId": 1000 + i, "publicKey": b64(b"\x05" * 33)} for i in range(20)]
            res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
            assert res.status_code == 200, res.text
            assert await count_otpks(node, user.device_id) == 50
            # The oldest went first: the 10 lowest ids of the first upload.
            kept = await fetchval(node, "SELECT array_agg(id ORDER BY id) FROM one_time_pre_keys WHERE device_id = $1",
                                  user.device_id)
            assert kept == list(range(10, 40)) + list(range(1000, 1020))
            res = await http.post("/v1/devices/keys", json=refill(user.identity, spk_id=3, otpk_count=51),
                                  headers=user.auth)
            assert res.status_code == 400 and res.json() == {"error": "Batch too large. Limit is 50"}


async def test_key_rotation_monotonic_check(app, http):
    user = await register_user(http)
    res = await http.post("/v1/devices/keys", json=refill(user.identity, spk_id=11), headers=user.auth)
    assert res.status_code == 200
    for spk_id in (10, 11):
        res = await http.post("/v1/devices/keys", json=refill(user.identity, spk_id=spk_id), headers=user.auth)
        assert res.status_code == 400
        assert res.json() == {"error": f"Signed Pre-Key ID {spk_id} must be greater than current ID 11"}


async def test_key_rotation_cleanup(app, http):
    user = await register_user(http)
    res = await http.post("/v1/devices/keys", json=refill(user.identity, spk_id=10), headers=user.auth)
    assert res.status_code == 200
    ids = await fetchval(app, "SELECT array_agg(id) FROM signed_pre_keys WHERE device_id = $1", user.device_id)
    assert ids == [10]


async def test_stored_otpk_id_collision_is_ignored(app, http):
    user = await register_user(http, otpk_count=3)
    before = await fetchval(app, "SELECT public_key FROM one_time_pre_keys WHERE device_id = $1 AND id = 0",
                            user.device_id)
    res = await http.post("/v1/devices/keys", json=refill(user.identity, spk_id=2, otpk_count=4, otpk_start=0),
                          headers=user.auth)
    assert res.status_code == 200
    assert await count_otpks(app, user.device_id) == 4
    assert await fetchval(app, "SELECT public_key FROM one_time_pre_keys WHERE device_id = $1 AND id = 0",
                          user.device_id) == before


async def test_device_takeover_success(app, http):
    user = await register_user(http, otpk_count=5)
    sender = await register_user(http)
    await seed_message(app, sender.user_id, sender.device_id, user.device_id)
    assert await inbox_size(app, user.device_id) == 1
    recorder = BusRecorder(app, user.device_id)
    try:
        new_identity = IdentityKey()
        body = key_bundle(new_identity, spk_id=2, registration_id=456, otpk_count=2, otpk_start=50)
        res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
        assert res.status_code == 200, res.text
        assert await inbox_size(app, user.device_id) == 0
        await recorder.wait_for((user.device_id, Event.DISCONNECT))
    finally:
        recorder.close()
    row = await fetchval(app, "SELECT (identity_key, registration_id) FROM identity_keys WHERE device_id = $1",
                         user.device_id)
    assert bytes(row[0]) == new_identity.public and row[1] == 456
    assert await fetchval(app, "SELECT array_agg(id ORDER BY id) FROM one_time_pre_keys WHERE device_id = $1",
                          user.device_id) == [50, 51]
    assert app.telemetry.value("obscura_key_takeovers_total") == 1
    # A takeover skips the monotonic check: a lower SPK id is fine with another new identity.
    res = await http.post("/v1/devices/keys", json=key_bundle(IdentityKey(), spk_id=1, registration_id=7),
                          headers=user.auth)
    assert res.status_code == 200
    assert app.telemetry.value("obscura_key_takeovers_total") == 2


async def test_device_creation_is_not_a_counted_takeover(app, http):
    await register_user(http)
    assert app.telemetry.value("obscura_key_takeovers_total") in (None, 0)


async def test_same_identity_key_is_not_a_takeover_and_keeps_registration_id(app, http):
    user = await register_user(http)
    sender = await register_user(http)
    await seed_message(app, sender.user_id, sender.device_id, user.device_id)
    body = key_bundle(user.identity, spk_id=2, registration_id=999)
    res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
    assert res.status_code == 200
    assert await fetchval(app, "SELECT registration_id FROM identity_keys WHERE device_id = $1", user.device_id) == 123
    assert await inbox_size(app, user.device_id) == 1
    res = await http.post("/v1/devices/keys", json=key_bundle(user.identity, spk_id=2), headers=user.auth)
    assert res.status_code == 400  # the monotonic check applies: not a takeover
    body = refill(user.identity, spk_id=3)
    body["registrationId"] = 555  # ignored without identityKey (spec §13 item 21)
    assert (await http.post("/v1/devices/keys", json=body, headers=user.auth)).status_code == 200
    assert await fetchval(app, "SELECT registration_id FROM identity_keys WHERE device_id = $1", user.device_id) == 123


async def test_upload_keys_bad_signature(http):
    user = await register_user(http)
    body = refill(user.identity, spk_id=2)
    body["signedPreKey"]["signature"] = b64(bytes(64))
    res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
    assert res.status_code == 400 and res.json() == {"error": "Invalid signature"}
    # Signed by another identity than the stored one.
    body["signedPreKey"] = key_bundle(IdentityKey(), spk_id=2)["signedPreKey"]
    res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
    assert res.status_code == 400 and res.json() == {"error": "Invalid signature"}


async def test_upload_validation_messages(app, http):
    user = await register_user(http)

    async def error_of(body: dict) -> tuple[int, str]:
        res = await http.post("/v1/devices/keys", json=body, headers=user.auth)
        return res.status_code, res.json()["error"]

    body = refill(user.identity, spk_id=2, otpk_count=2)
    body["identityKey"] = "not base64!"
    body["oneTimePreKeys"][1]["keyId"] = body["oneTimePreKeys"][0]["keyId"]
    assert await error_of(body) == (400, "registrationId is required when identityKey is provided")
    body["registrationId"] = 1
    assert await error_of(body) == (400, "Duplicate prekey ID: 100")
    body = refill(user.identity, spk_id=2)
    body["identityKey"] = b64(b"\x05" * 32)
    body["registrationId"] = 1
    assert await error_of(body) == (400, "Invalid key length: 32 (expected 33 bytes with 0x05 prefix)")
    body = refill(user.identity, spk_id=2)
    body["signedPreKey"]["publicKey"] = base64.urlsafe_b64encode(b"\x05" + b"\xff" * 32).decode()
    assert (await error_of(body))[1].startswith("Invalid symbol")
    body = refill(user.identity, spk_id=2)
    body["signedPreKey"]["signature"] = b64(bytes(65))
    assert await error_of(body) == (400, "Invalid signature length: 65 (expected 64)")
    body = refill(user.identity, spk_id=2, otpk_count=1)
    body["oneTimePreKeys"][0]["publicKey"] = b64(b"\x06" + bytes(32))
    assert await error_of(body) == (400, "Invalid key prefix (expected 0x05)")
    assert await error_of(refill(user.identity, spk_id=2, otpk_count=101)) == (400, "Batch too large. Limit is 100")
    body = key_bundle(IdentityKey(), spk_id=2, otpk_count=101)
    assert await error_of(body) == (400, "Batch too large. Limit is 100")  # also on a takeover
    assert await count_otpks(app, user.device_id) == 1  # nothing applied


async def test_identity_key_missing(app, http):
    user = await register(http)
    device_id = uuid.uuid4()
    async with app.database.acquire() as conn:
        await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", device_id, user.user_id)
    token, _ = app.tokens.issue(user.user_id, device_id)
    res = await http.post("/v1/devices/keys", json=refill(IdentityKey(), spk_id=1), headers=bearer(token))
    assert res.status_code == 400 and res.json() == {"error": "Identity key missing"}


async def test_fetch_keys_multiple_devices(app, http):
    user = await register_user(http, otpk_count=2)
    second = IdentityKey()
    res = await http.post("/v1/sessions", json={"username": user.username, "password": "password12345"})
    login_token = res.json()["token"]
    res = await http.post("/v1/devices", json=key_bundle(second, registration_id=77), headers=bearer(login_token))
    second_device = res.json()["deviceId"]
    fetcher = await register_user(http)

    res = await http.get(f"/v1/users/{user.user_id}", headers=bearer(login_token))
    assert res.status_code == 403 and res.json() == {"error": "Device-scoped token required"}

    res = await http.get(f"/v1/users/{user.user_id}", headers=fetcher.auth)
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    bundles = {b["deviceId"]: b for b in res.json()}
    assert set(bundles) == {str(user.device_id), second_device}
    mine = bundles[str(user.device_id)]
    assert list(mine) == ["deviceId", "registrationId", "identityKey", "signedPreKey", "oneTimePreKey"]
    assert mine["registrationId"] == 123 and mine["identityKey"] == b64(user.identity.public)
    assert mine["signedPreKey"]["keyId"] == 1 and len(base64.b64decode(mine["signedPreKey"]["signature"])) == 64
    assert mine["oneTimePreKey"]["keyId"] in (0, 1)
    assert bundles[second_device]["registrationId"] == 77
    assert await count_otpks(app, user.device_id) == 1

    # Fetching oneself is allowed; keys run out to null.
    for expected_left in (0, 0):
        res = await http.get(f"/v1/users/{user.user_id}", headers=user.auth)
        assert res.status_code == 200
        assert await count_otpks(app, user.device_id) == expected_left
    assert {b["deviceId"]: b["oneTimePreKey"] for b in res.json()}[str(user.device_id)] is None


async def test_fetch_bundles_not_found(http):
    fetcher = await register_user(http)
    keyless = await register(http)
    for user_id in (uuid.uuid4(), keyless.user_id):
        res = await http.get(f"/v1/users/{user_id}", headers=fetcher.auth)
        assert res.status_code == 404 and res.json() == {"error": "Not found"}
    res = await http.get("/v1/users/not-a-uuid", headers=fetcher.auth)
    assert res.status_code == 400


async def test_low_prekeys_publish_and_schedule_push(app, http):
    target = await register_user(http, otpk_count=21)
    fetcher = await register_user(http)
    recorder = BusRecorder(app, target.device_id)
    try:
        assert (await http.get(f"/v1/users/{target.user_id}", headers=fetcher.auth)).status_code == 200
        assert await app.coordinator.push_due_at(target.device_id) is None  # 20 left: not low
        assert (await http.get(f"/v1/users/{target.user_id}", headers=fetcher.auth)).status_code == 200
        await recorder.wait_for((target.device_id, Event.PREKEY_LOW))  # 19 < 20
        assert await app.coordinator.push_due_at(target.device_id) is not None
        assert app.telemetry.value("obscura_prekey_threshold_reached_total") == 1
    finally:
        recorder.close()
    assert await app.keys.one_time_prekey_count(target.device_id) == 19


async def test_concurrent_fetches_never_share_a_one_time_prekey(app, http):
    target = await register_user(http, otpk_count=12)
    fetcher = await register_user(http)
    results = await asyncio.gather(*(http.get(f"/v1/users/{target.user_id}", headers=fetcher.auth)
                                     for _ in range(16)))
    assert all(r.status_code == 200 for r in results)
    handed = [r.json()[0]["oneTimePreKey"]["keyId"] for r in results if r.json()[0]["oneTimePreKey"] is not None]
    assert len(handed) == len(set(handed)) and len(handed) >= 1
    assert len(handed) + await count_otpks(app, target.device_id) == 12


async def test_user_scoped_token_rejected_and_unauthenticated(http):
    user = await register_user(http)
    body = refill(user.identity, spk_id=2)
    for headers, status in (({}, 401), ({"Authorization": "Bearer invalid-token"}, 401),
                            ({"Authorization": "NotBearer some-token"}, 401),
                            (bearer(user.user_token), 403)):
        res = await http.post("/v1/devices/keys", json=body, headers=headers)
        assert res.status_code == status, headers
        res = await http.get(f"/v1/users/{user.user_id}", headers=headers)
        assert res.status_code == status, headers
    # The body is parsed before the scope check (spec §2.1): a malformed one is the 4xx that wins.
    res = await http.post("/v1/devices/keys", content=b"{", headers={**bearer(user.user_token),
                                                                     "Content-Type": "application/json"})
    assert res.status_code == 400


def _client(node):
    import httpx
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=10)
