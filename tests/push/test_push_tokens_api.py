"""PUT /v1/push-tokens (spec §2.12; upstream integration_notifications token tests; issue 6 `type`)."""

from __future__ import annotations

import pytest

from tests.support.users import bearer, register, register_user


async def _row(app, device_id):
    return await app.database.pool.fetchrow(
        "SELECT token, token_type, updated_at FROM push_tokens WHERE device_id = $1", device_id)


async def test_register_then_replace(app, http):
    user = await register_user(http)
    res = await http.put("/v1/push-tokens", json={"token": "first"}, headers=user.auth)
    assert res.status_code == 200 and res.content == b"" and "content-type" not in res.headers
    first = await _row(app, user.device_id)
    assert (first["token"], first["token_type"]) == ("first", "fcm")
    res = await http.put("/v1/push-tokens", json={"token": "second", "type": "apns"}, headers=user.auth)
    assert res.status_code == 200
    second = await _row(app, user.device_id)
    assert (second["token"], second["token_type"]) == ("second", "apns")
    assert second["updated_at"] >= first["updated_at"]
    count = await app.database.pool.fetchval("SELECT count(*) FROM push_tokens WHERE device_id = $1", user.device_id)
    assert count == 1


async def test_stored_untrimmed_and_unknown_fields_ignored(app, http):
    user = await register_user(http)
    res = await http.put("/v1/push-tokens", json={"token": "  padded\t", "type": None, "platform": "android",
                                                  "extra": {"nested": [1]}}, headers=user.auth)
    assert res.status_code == 200
    row = await _row(app, user.device_id)
    assert (row["token"], row["token_type"]) == ("  padded\t", "fcm")


@pytest.mark.parametrize(("token", "message"), [
    ("", "Token cannot be empty"),
    ("   \n\t ", "Token cannot be empty"),
    ("x" * 4097, "Token is too long (max 4096 characters)"),
    ("é" * 2049, "Token is too long (max 4096 characters)"),  # 4098 bytes: the limit counts bytes
])
async def test_validation(app, http, token, message):
    user = await register_user(http)
    res = await http.put("/v1/push-tokens", json={"token": token}, headers=user.auth)
    assert res.status_code == 400 and res.json() == {"error": message}
    assert await _row(app, user.device_id) is None


async def test_limit_applies_to_the_trimmed_value(app, http):
    user = await register_user(http)
    token = "  " + "x" * 4096 + "  "
    assert (await http.put("/v1/push-tokens", json={"token": token}, headers=user.auth)).status_code == 200
    assert (await _row(app, user.device_id))["token"] == token


async def test_auth_scope_and_shape(app, http):
    user = await register_user(http)
    assert (await http.put("/v1/push-tokens", json={"token": "t"})).status_code == 401
    account = await register(http)
    res = await http.put("/v1/push-tokens", json={"token": "t"}, headers=bearer(account.user_token))
    assert res.status_code == 403 and res.json() == {"error": "Device-scoped token required"}
    res = await http.put("/v1/push-tokens", json={}, headers=user.auth)
    assert res.status_code == 422 and "missing field `token`" in res.json()["error"]
    res = await http.put("/v1/push-tokens", json={"token": 5}, headers=user.auth)
    assert res.status_code == 422
    res = await http.put("/v1/push-tokens", json={"token": "t", "type": "webpush"}, headers=user.auth)
    assert res.status_code == 422 and "unknown variant `webpush`, expected `fcm` or `apns`" in res.json()["error"]
    res = await http.put("/v1/push-tokens", content=b"{", headers={**user.auth, "content-type": "application/json"})
    assert res.status_code == 400
    res = await http.put("/v1/push-tokens", content=b'{"token":"t"}', headers=user.auth)
    assert res.status_code == 415
    assert await _row(app, user.device_id) is None


async def test_token_goes_with_the_device(app, http):
    user = await register_user(http)
    assert (await http.put("/v1/push-tokens", json={"token": "t"}, headers=user.auth)).status_code == 200
    res = await http.delete(f"/v1/devices/{user.device_id}", headers=user.auth)
    assert res.status_code == 200
    assert await _row(app, user.device_id) is None
    res = await http.put("/v1/push-tokens", json={"token": "t"}, headers=user.auth)
    assert res.status_code == 401
