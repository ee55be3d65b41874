"""Devices over real HTTP and PostgreSQL: upstream's integration_devices plus decisions §4.4-4.6."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta, timezone

from obscura.api.devices import rfc3339_utc
from obscura.coord.base import Event
from tests.accounts.devices_support import BusRecorder, fetchval, inbox_size, seed_message
from tests.fixtures.server import running_app
from tests.support.signal_keys import key_bundle
from tests.support.users import add_device, bearer, jwt_claims, register, register_user

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


async def test_device_crud_lifecycle(app, http):
    user = await register(http)
    res = await http.get("/v1/devices", headers=bearer(user.user_token))
    assert res.status_code == 200 and res.json() == {"devices": []}

    first = key_bundle()
    res = await http.post("/v1/devices", json=first, headers=bearer(user.user_token))
    assert res.status_code == 201, res.text
    body = res.json()
    assert list(body) == ["token", "refreshToken", "expiresAt", "deviceId"]
    device1 = uuid.UUID(body["deviceId"])
    assert jwt_claims(body["token"]) == {"sub": str(user.user_id), "device_id": str(device1),
                                         "exp": body["expiresAt"]}
    res = await http.post("/v1/devices", json={**key_bundle(), "name": "My Phone"}, headers=bearer(user.user_token))
    assert res.status_code == 201
    device2 = uuid.UUID(res.json()["deviceId"])

    listed = (await http.get("/v1/devices", headers=bearer(user.user_token))).json()["devices"]
    assert [d["deviceId"] for d in listed] == [str(device1), str(device2)]
    assert listed[0]["name"] is None and listed[1]["name"] == "My Phone"
    assert all(CREATED_AT.match(d["createdAt"]) for d in listed)

    other = await register_user(http)
    await seed_message(app, other.user_id, other.device_id, device1)
    await seed_message(app, user.user_id, device1, other.device_id)  # sent by device 1, still pending
    assert await inbox_size(app, device1) == 1

    res = await http.delete(f"/v1/devices/{device1}", headers=bearer(user.user_token))
    assert res.status_code == 200 and res.content == b"" and "content-type" not in res.headers
    listed = (await http.get("/v1/devices", headers=bearer(user.user_token))).json()["devices"]
    assert [d["deviceId"] for d in listed] == [str(device2)]
    for table in ("identity_keys", "signed_pre_keys", "one_time_pre_keys", "refresh_tokens"):
        assert await fetchval(app, f"SELECT count(*) FROM {table} WHERE device_id = $1", device1) == 0, table
    assert await inbox_size(app, device1) == 0
    assert await fetchval(app, "SELECT count(*) FROM messages WHERE sender_device_id = $1", device1) == 0
    assert app.telemetry.value("obscura_devices_created_total") == 3
    assert app.telemetry.value("obscura_devices_deleted_total") == 1


async def test_device_session_is_device_scoped_and_refreshable(http):
    user = await add_device(http, await register(http))
    res = await http.post("/v1/sessions/refresh", json={"refreshToken": user.device_refresh_token})
    assert res.status_code == 200, res.text
    assert res.json()["deviceId"] == str(user.device_id)
    assert jwt_claims(res.json()["token"])["device_id"] == str(user.device_id)


async def test_device_scoped_token_may_add_devices(http):
    user = await register_user(http)
    res = await http.post("/v1/devices", json=key_bundle(), headers=bearer(user.token))
    assert res.status_code == 201


async def test_device_limit_enforced(settings_factory):
    async with running_app(settings_factory(auth_max_devices_per_user=3)) as node:
        async with _client(node) as http:
            user = await register(http)
            for _ in range(3):
                assert (await http.post("/v1/devices", json=key_bundle(), headers=bearer(user.user_token))).status_code == 201
            res = await http.post("/v1/devices", json=key_bundle(), headers=bearer(user.user_token))
            assert res.status_code == 403
            assert res.json() == {"error": "Device limit reached. Maximum allowed is 3."}
            # The cap is checked before the signature (spec §2.6 step 3 before step 4).
            bad = key_bundle()
            bad["signedPreKey"]["signature"] = "A" * 86 + "=="
            res = await http.post("/v1/devices", json=bad, headers=bearer(user.user_token))
            assert res.status_code == 403


async def test_device_cap_holds_under_concurrent_creation(settings_factory):
    async with running_app(settings_factory(auth_max_devices_per_user=3, db_max_connections=12)) as node:
        async with _client(node) as http:
            user = await register(http)
            results = await asyncio.gather(*(
                http.post("/v1/devices", json=key_bundle(), headers=bearer(user.user_token)) for _ in range(10)))
            statuses = sorted(r.status_code for r in results)
            assert statuses == [201] * 3 + [403] * 7
            assert await fetchval(node, "SELECT count(*) FROM devices WHERE user_id = $1", user.user_id) == 3


async def test_get_and_put_device(http):
    user = await register_user(http)
    path = f"/v1/devices/{user.device_id}"
    res = await http.get(path, headers=user.auth)
    assert res.status_code == 200
    assert res.json()["deviceId"] == str(user.device_id) and res.json()["name"] is None

    res = await http.put(path, json={"name": "Updated Phone"}, headers=user.auth)
    assert res.status_code == 200 and res.json()["name"] == "Updated Phone"
    assert (await http.get(path, headers=user.auth)).json()["name"] == "Updated Phone"
    # A missing name, like null, clears it (spec §13 item 20).
    assert (await http.put(path, json={}, headers=user.auth)).json()["name"] is None
    await http.put(path, json={"name": "again"}, headers=user.auth)
    assert (await http.put(path, json={"name": None}, headers=user.auth)).json()["name"] is None

    other = await register_user(http)
    for method, kwargs in (("GET", {}), ("PUT", {"json": {"name": "x"}}), ("DELETE", {})):
        res = await http.request(method, path, headers=other.auth, **kwargs)
        assert res.status_code == 404 and res.json() == {"error": "Not found"}, method
    res = await http.get(f"/v1/devices/{uuid.uuid4()}", headers=user.auth)
    assert res.status_code == 404


async def test_paths_and_methods(http):
    user = await register_user(http)
    res = await http.get("/v1/devices/xyz", headers=user.auth)
    assert res.status_code == 400 and res.json()["error"].startswith("Invalid URL")
    for method in ("GET", "DELETE", "PUT"):
        assert (await http.request(method, "/v1/devices/keys", headers=user.auth)).status_code == 405, method
    assert (await http.patch(f"/v1/devices/{user.device_id}", headers=user.auth)).status_code == 405


async def test_device_name_longer_than_100_is_400(http):
    user = await register(http)
    res = await http.post("/v1/devices", json={**key_bundle(), "name": "n" * 101}, headers=bearer(user.user_token))
    assert res.status_code == 400
    assert res.json() == {"error": "Device name must be at most 100 characters"}
    res = await http.post("/v1/devices", json={**key_bundle(), "name": "é" * 100}, headers=bearer(user.user_token))
    assert res.status_code == 201
    device = res.json()["deviceId"]
    res = await http.put(f"/v1/devices/{device}", json={"name": "x" * 101}, headers=bearer(user.user_token))
    assert res.status_code == 400
    res = await http.put(f"/v1/devices/{device}", json={"name": "a\u0000b"}, headers=bearer(user.user_token))
    assert res.status_code == 400


async def test_create_device_validation_order_and_messages(http):
    user = await register(http)
    headers = bearer(user.user_token)

    async def error_of(body: dict) -> tuple[int, str]:
        res = await http.post("/v1/devices", json=body, headers=headers)
        return res.status_code, res.json()["error"]

    dup = key_bundle(otpk_count=2)
    dup["oneTimePreKeys"][1]["keyId"] = dup["oneTimePreKeys"][0]["keyId"]
    dup["identityKey"] = "!!!!"  # the duplicate wins over a bad key
    assert await error_of(dup) == (400, "Duplicate prekey ID: 0")

    cases = [
        ("identityKey", "!AAA", "Invalid symbol 33, offset 0."),
        ("identityKey", "BQ", "Invalid padding"),
        ("identityKey", "A", "Invalid input length."),
        ("identityKey", "AAAA", "Invalid key length: 3 (expected 33 bytes with 0x05 prefix)"),
        ("identityKey", "B" + "A" * 43, "Invalid key prefix (expected 0x05)"),
    ]
    for field, value, message in cases:
        body = key_bundle()
        body[field] = value
        body["signedPreKey"]["publicKey"] = "AAAA"  # later fields are reached only after identityKey
        assert await error_of(body) == (400, message), value

    body = key_bundle()
    body["signedPreKey"]["publicKey"] = "AAAA"
    body["signedPreKey"]["signature"] = "AAAA"
    assert await error_of(body) == (400, "Invalid key length: 3 (expected 33 bytes with 0x05 prefix)")
    body = key_bundle()
    body["signedPreKey"]["signature"] = "A" * 84
    assert await error_of(body) == (400, "Invalid signature length: 63 (expected 64)")
    body = key_bundle()
    body["oneTimePreKeys"][0]["publicKey"] = "A" * 43
    assert await error_of(body) == (400, "Invalid padding")
    body = key_bundle()
    body["signedPreKey"]["signature"] = "A" * 86 + "=="
    assert await error_of(body) == (400, "Invalid signature")
    assert await error_of(key_bundle(otpk_count=101)) == (400, "Batch too large. Limit is 100")
    assert await fetchval_devices(http, headers) == []


async def fetchval_devices(http, headers) -> list:
    return (await http.get("/v1/devices", headers=headers)).json()["devices"]


async def test_create_device_framework_errors(http):
    user = await register(http)
    headers = bearer(user.user_token)
    assert (await http.post("/v1/devices", json=key_bundle())).status_code == 401
    body = key_bundle()
    del body["identityKey"]
    res = await http.post("/v1/devices", json=body, headers=headers)
    assert res.status_code == 422 and "identityKey" in res.json()["error"]
    res = await http.post("/v1/devices", content=b"{}", headers=headers)
    assert res.status_code == 415
    res = await http.post("/v1/devices", content=b"{", headers={**headers, "Content-Type": "application/json"})
    assert res.status_code == 400
    body = key_bundle()
    body["registrationId"] = 2**31
    assert (await http.post("/v1/devices", json=body, headers=headers)).status_code == 422
    body = key_bundle()
    body["registrationId"] = -5  # int32, negative accepted (spec §4.1)
    assert (await http.post("/v1/devices", json=body, headers=headers)).status_code == 201


async def test_deleted_device_token_is_401(app, http):
    user = await register_user(http)
    other = await register_user(http)
    assert (await http.get("/v1/devices", headers=user.auth)).status_code == 200  # warms the caches
    res = await http.delete(f"/v1/devices/{user.device_id}", headers=user.auth)  # a device may delete itself
    assert res.status_code == 200
    for method, path, kwargs in (
        ("GET", "/v1/devices", {}),
        ("POST", "/v1/devices", {"json": key_bundle()}),
        ("POST", "/v1/devices/keys", {"json": key_bundle(spk_id=5)}),
        ("GET", f"/v1/users/{other.user_id}", {}),
    ):
        res = await http.request(method, path, headers=user.auth, **kwargs)
        assert res.status_code == 401 and res.json() == {"error": "Unauthorized"}, path
    # The user-scoped token of the account still works.
    assert (await http.get("/v1/devices", headers=bearer(user.user_token))).status_code == 200


async def test_exists_cache_is_evicted_by_delete(app, http):
    user = await register_user(http)
    assert await app.devices.exists(user.device_id)
    assert await app.devices.exists(user.device_id)  # cached
    await app.devices.delete_device(user.user_id, user.device_id)
    assert not await app.devices.exists(user.device_id)
    assert not await app.devices.exists(uuid.uuid4())


async def test_delete_disconnects_the_device_everywhere(app, http):
    user = await register_user(http)
    recorder = BusRecorder(app, user.device_id)
    try:
        res = await http.delete(f"/v1/devices/{user.device_id}", headers=bearer(user.user_token))
        assert res.status_code == 200
        await recorder.wait_for((user.device_id, Event.DISCONNECT))
    finally:
        recorder.close()


async def test_delete_hooks_run_after_commit_and_failures_are_contained(app, http):
    user = await register_user(http)
    seen = []

    async def broken(user_id, device_id):
        raise RuntimeError("storage down")

    async def record(user_id, device_id):
        seen.append((user_id, device_id, await fetchval(app, "SELECT count(*) FROM devices WHERE id = $1",
                                                           device_id)))

    app.devices.on_deleted[:0] = [broken, record]
    res = await http.delete(f"/v1/devices/{user.device_id}", headers=bearer(user.user_token))
    assert res.status_code == 200
    assert seen == [(user.user_id, user.device_id, 0)]


async def test_rate_tier_is_standard(settings_factory):
    settings = settings_factory(rate_limit_per_second=1, rate_limit_burst=1)
    async with running_app(settings) as node:
        async with _client(node) as http:
            headers = {"X-Forwarded-For": "203.0.113.9"}
            # Burst 1 at 1/s: of a quick series only the first gets through to the auth check.
            results = [await http.get("/v1/devices", headers=headers) for _ in range(5)]
            assert results[0].status_code == 401
            throttled = [r for r in results if r.status_code == 429]
            assert throttled and "retry-after" in throttled[0].headers


def test_created_at_format_trims_trailing_zeros():
    moment = datetime(2026, 7, 21, 19, 54, 34, 123450, tzinfo=timezone.utc)
    assert rfc3339_utc(moment) == "2026-07-21T19:54:34.12345Z"
    assert rfc3339_utc(moment.replace(microsecond=0)) == "2026-07-21T19:54:34Z"
    assert rfc3339_utc(moment.replace(microsecond=100000)) == "2026-07-21T19:54:34.1Z"
    east = moment.astimezone(timezone(timedelta(hours=5)))
    assert rfc3339_utc(east) == "2026-07-21T19:54:34.12345Z"


def _client(node):
    import httpx
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=10)


def test_openapi_documents_every_device_and_key_route():
    import yaml

    from obscura.api.devices import add_device_routes
    from obscura.api.docs import openapi_document
    from obscura.api.keys import add_key_routes
    from obscura.http.router import Router

    router = Router()
    add_device_routes(router, None, None)  # registration never touches the services
    add_key_routes(router, None, None)
    paths = yaml.safe_load(openapi_document())["paths"]
    for route in router.routes:
        operation = paths[route.pattern][route.method.lower()]
        assert "401" in operation["responses"] and "429" in operation["responses"], route.name
        assert route.meta == {"tier": "standard"}, route.name
