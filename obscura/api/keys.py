"""REST for Signal keys: POST /v1/devices/keys and GET /v1/users/{userId} (spec §2.8-2.9)."""

from __future__ import annotations

from typing import Any

from obscura.api.common import Authenticator, EMPTY_OK, json_body, path_uuid, require_device
from obscura.api.devices import decode_keys, read_one_time_prekey, read_signed_prekey
from obscura.api.ratelimit import STANDARD
from obscura.domain.devices import PreKeyBundle
from obscura.domain.keys import b64encode
from obscura.errors import BadRequest
from obscura.http.request import Request
from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.keys import KeyService

__all__ = ["add_key_routes", "bundle_json"]


def bundle_json(bundle: PreKeyBundle) -> dict[str, Any]:
    spk = bundle.signed_pre_key
    otpk = bundle.one_time_pre_key
    return {
        "deviceId": str(bundle.device_id),
        "registrationId": bundle.registration_id,
        "identityKey": b64encode(bundle.identity_key),
        "signedPreKey": {"keyId": spk.key_id, "publicKey": b64encode(spk.public_key),
                         "signature": b64encode(spk.signature)},
        "oneTimePreKey": None if otpk is None else {"keyId": otpk.key_id, "publicKey": b64encode(otpk.public_key)},
    }


def add_key_routes(router: Router, keys: KeyService, auth: Authenticator) -> None:
    async def upload_keys(request: Request) -> Response:
        claims = await auth(request)
        body = await json_body(request)
        identity_key = body.str("identityKey", optional=True)
        registration_id = body.int32("registrationId", optional=True)
        spk = read_signed_prekey(body.obj("signedPreKey"))  # type: ignore[arg-type]
        otpks = body.list_of("oneTimePreKeys", read_one_time_prekey)
        device_id = require_device(claims)  # 403 after the body parsed (spec §2.1 check order)
        if identity_key is not None and registration_id is None:
            raise BadRequest("registrationId is required when identityKey is provided")
        upload = decode_keys(identity_key, registration_id, spk, otpks)  # type: ignore[arg-type]
        await keys.upload_keys(device_id, upload)
        return EMPTY_OK

    async def fetch_bundles(request: Request) -> Response:
        claims = await auth(request)
        user_id = path_uuid(request, "userId")
        require_device(claims)
        return json_response([bundle_json(b) for b in await keys.fetch_bundles(user_id)])

    # The static /v1/devices/keys beats /v1/devices/{deviceId}: GET on it is a 405 (spec §2.1).
    router.add("POST", "/v1/devices/keys", upload_keys, name="keys.upload", meta=STANDARD)
    router.add("GET", "/v1/users/{userId}", fetch_bundles, name="keys.bundles", meta=STANDARD)
