"""REST for devices: POST/GET /v1/devices, GET/PUT/DELETE /v1/devices/{deviceId} (spec §2.6-2.7)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from obscura.api.common import Authenticator, EMPTY_OK, Body, json_body, path_uuid
from obscura.api.ratelimit import STANDARD
from obscura.domain.devices import MAX_DEVICE_NAME_CHARS, Device
from obscura.domain.keys import KeyFormatError, KeyUpload, OneTimePreKey, SignedPreKey, decode_public_key, \
    decode_signature
from obscura.errors import BadRequest
from obscura.http.request import Request
from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.devices import DeviceService

__all__ = ["add_device_routes", "read_signed_prekey", "read_one_time_prekey",
           "decode_keys", "rfc3339_utc", "device_json"]


# -- key material in JSON (shared with POST /v1/devices/keys) -------------------------------------
def read_signed_prekey(b: Body) -> tuple[int, str, str]:
    return b.int32("keyId"), b.str("publicKey"), b.str("signature")  # type: ignore[return-value]


def read_one_time_prekey(b: Body) -> tuple[int, str]:
    return b.int32("keyId"), b.str("publicKey")  # type: ignore[return-value]


def decode_keys(identity_key: str | None, registration_id: int | None, spk: tuple[int, str, str],
                otpks: list[tuple[int, str]]) -> KeyUpload:
    """Duplicate OTPK ids first, then identityKey, SPK key, SPK signature, each OTPK (spec §2.6)."""
    seen: set[int] = set()
    for key_id, _ in otpks:
        if key_id in seen:
            raise BadRequest(f"Duplicate prekey ID: {key_id}")
        seen.add(key_id)
    try:
        identity = decode_public_key(identity_key) if identity_key is not None else None
        signed = SignedPreKey(spk[0], decode_public_key(spk[1]), decode_signature(spk[2]))
        one_time = tuple(OneTimePreKey(key_id, decode_public_key(text)) for key_id, text in otpks)
    except KeyFormatError as exc:
        raise BadRequest(str(exc)) from None
    return KeyUpload(identity, registration_id, signed, one_time)


def check_device_name(name: str | None) -> str | None:
    """The column is VARCHAR(100): reject what PostgreSQL would refuse with a 400 (decisions §4.4)."""
    if name is None:
        return None
    if len(name) > MAX_DEVICE_NAME_CHARS:
        raise BadRequest(f"Device name must be at most {MAX_DEVICE_NAME_CHARS} characters")
    if "\x00" in name:
        raise BadRequest("Device name must not contain NUL characters")
    return name


# -- rendering -------------------------------------------------------------------------------------
def rfc3339_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` and the fraction's trailing zeros trimmed, as upstream prints it."""
    utc = moment.astimezone(timezone.utc)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def device_json(device: Device) -> dict[str, Any]:
    return {"deviceId": str(device.device_id), "name": device.name, "createdAt": rfc3339_utc(device.created_at)}


# -- routes ----------------------------------------------------------------------------------------
def add_device_routes(router: Router, devices: DeviceService, auth: Authenticator) -> None:
    async def create_device(request: Request) -> Response:
        claims = await auth(request)
        body = await json_body(request)
        name = body.str("name", optional=True)
        identity_key = body.str("identityKey")
        registration_id = body.int32("registrationId")
        spk = read_signed_prekey(body.obj("signedPreKey"))  # type: ignore[arg-type]
        otpks = body.list_of("oneTimePreKeys", read_one_time_prekey)
        upload = decode_keys(identity_key, registration_id, spk, otpks)  # type: ignore[arg-type]
        name = check_device_name(name)
        session = await devices.create_device(claims.user_id, name, upload)
        return json_response(session, status=201)

    async def list_devices(request: Request) -> Response:
        claims = await auth(request)
        found = await devices.list_devices(claims.user_id)
        return json_response({"devices": [device_json(d) for d in found]})

    async def get_device(request: Request) -> Response:
        claims = await auth(request)
        device_id = path_uuid(request, "deviceId")
        return json_response(device_json(await devices.get_device(claims.user_id, device_id)))

    async def rename_device(request: Request) -> Response:
        claims = await auth(request)
        device_id = path_uuid(request, "deviceId")
        body = await json_body(request)
        # A missing name, like null, clears it (spec §13 item 20).
        name = check_device_name(body.str("name", optional=True))
        return json_response(device_json(await devices.rename_device(claims.user_id, device_id, name)))

    async def delete_device(request: Request) -> Response:
        claims = await auth(request)
        device_id = path_uuid(request, "deviceId")
        await devices.delete_device(claims.user_id, device_id)
        return EMPTY_OK

    router.add("POST", "/v1/devices", create_device, name="devices.create", meta=STANDARD)
    router.add("GET", "/v1/devices", list_devices, name="devices.list", meta=STANDARD)
    router.add("GET", "/v1/devices/{deviceId}", get_device, name="devices.get", meta=STANDARD)
    router.add("PUT", "/v1/devices/{deviceId}", rename_device, name="devices.rename", meta=STANDARD)
    router.add("DELETE", "/v1/devices/{deviceId}", delete_device, name="devices.delete", meta=STANDARD)
