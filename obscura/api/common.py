"""Shared REST plumbing: JSON bodies with upstream's status codes, bearer auth, scopes (spec §2.1)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from obscura.errors import BadRequest, Forbidden, UnprocessableEntity, Unauthorized, UnsupportedMediaType
from obscura.http.request import Request
from obscura.http.response import Response
from obscura.services.tokens import Claims, TokenService

__all__ = [
    "json_body", "Body", "Authenticator", "require_device", "path_uuid", "EMPTY_OK",
    "INT32_MIN", "INT32_MAX",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
EMPTY_OK = Response(200)  # endpoints that return only a status carry no body and no Content-Type

_DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


async def json_body(request: Request) -> Body:
    """The request's JSON object: 415 without a JSON content type, 400 on a syntax error,
    422 when it is valid JSON of the wrong shape, 413 above the body limit (spec §2.1)."""
    if not _is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType()
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Failed to parse the request body as JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise UnprocessableEntity(f"{_DESERIALIZE}invalid type: expected a JSON object")
    return Body(value)


class Body:
    """Typed access to a JSON object; every shape error is a 422 naming the field, like serde's."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: dict[str, Any], path: str = "") -> None:
        self._data = data
        self._path = path

    def _fail(self, name: str, what: str) -> UnprocessableEntity:
        return UnprocessableEntity(f"{_DESERIALIZE}{self._path}{name}: {what}")

    def _value(self, name: str, optional: bool) -> Any:
        """The field's value; None for an absent or null Option field; 422 for a missing one."""
        if name not in self._data:
            if optional:
                return None
            raise UnprocessableEntity(f"{_DESERIALIZE}{self._path}missing field `{name}`")
        value = self._data[name]
        if value is None and not optional:
            raise self._fail(name, "invalid type: null")
        return value

    def str(self, name: str, *, optional: bool = False) -> str | None:
        value = self._value(name, optional)
        if value is not None and not isinstance(value, str):
            raise self._fail(name, f"invalid type: {_kind(value)}, expected a string")
        return value

    def int32(self, name: str, *, optional: bool = False) -> int | None:
        value = self._value(name, optional)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(name, f"invalid type: {_kind(value)}, expected i32")
        if not INT32_MIN <= value <= INT32_MAX:
            raise self._fail(name, f"invalid value: integer `{value}`, expected i32")
        return value

    def obj(self, name: str, *, optional: bool = False) -> Body | None:
        value = self._value(name, optional)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._fail(name, f"invalid type: {_kind(value)}, expected a map")
        return Body(value, f"{self._path}{name}.")

    def list_of(self, name: str, item: Callable[[Body], Any], *, optional: bool = False) -> list[Any] | None:
        value = self._value(name, optional)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._fail(name, f"invalid type: {_kind(value)}, expected a sequence")
        out = []
        for i, element in enumerate(value):
            if not isinstance(element, dict):
                raise self._fail(f"{name}[{i}]", f"invalid type: {_kind(element)}, expected a map")
            out.append(item(Body(element, f"{self._path}{name}[{i}].")))
        return out

    def has(self, name: str) -> bool:
        return name in self._data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "sequence"
    return "map"


class Authenticator:
    """Bearer authentication for every protected route (spec §2.1, decisions §4.6).

    ``Authorization: Bearer <jwt>`` exactly (case-sensitive prefix, one space), else 401. A
    device-scoped token whose device was deleted is a 401 too, never a later 500: the device is
    looked up through ``device_exists`` (cached by its owner, so the hot path stays cheap).
    """

    def __init__(self, tokens: TokenService,
                 device_exists: Callable[[uuid.UUID], Awaitable[bool]] | None = None) -> None:
        self.tokens = tokens
        self.device_exists = device_exists

    async def __call__(self, request: Request) -> Claims:
        cached = request.state.get("claims")
        if cached is not None:
            return cached
        header = request.headers.get("authorization")
        if header is None or not header.isascii() or not header.startswith("Bearer "):
            raise Unauthorized()
        claims = self.tokens.verify(header[7:])
        if claims.device_id is not None and self.device_exists is not None:
            if not await self.device_exists(claims.device_id):
                raise Unauthorized()
        request.state["claims"] = claims
        return claims


def require_device(claims: Claims) -> uuid.UUID:
    """The device of a device-scoped token; 403 for a user-scoped one (spec §2.1)."""
    if claims.device_id is None:
        raise Forbidden("Device-scoped token required")
    return claims.device_id


def path_uuid(request: Request, name: str) -> uuid.UUID:
    """A UUID path parameter; anything else is a 400 (spec §2.1 'Invalid URL')."""
    raw = request.path_params.get(name, "")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(f"Invalid URL: Cannot parse `{name}` with value `{raw[:64]}` to a `Uuid`") from None
