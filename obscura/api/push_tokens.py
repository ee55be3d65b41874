"""REST route for registering a device's push token (spec §2.12, issue 6)."""

from __future__ import annotations

from obscura.api.common import EMPTY_OK, Authenticator, json_body, require_device
from obscura.api.ratelimit import STANDARD
from obscura.errors import UnprocessableEntity
from obscura.http.request import Request
from obscura.http.response import Response
from obscura.http.router import Router
from obscura.push.base import TOKEN_TYPES
from obscura.services.push_tokens import PushTokenService

__all__ = ["add_push_token_routes"]


def add_push_token_routes(router: Router, service: PushTokenService, auth: Authenticator) -> None:
    async def register_token(request: Request) -> Response:
        device_id = require_device(await auth(request))
        body = await json_body(request)
        token = body.str("token")
        # Optional; iOS clients send "apns". Unknown extra fields are ignored, as serde does.
        token_type = body.str("type", optional=True) or "fcm"
        if token_type not in TOKEN_TYPES:
            shown = token_type[:32].replace("`", "'")
            raise UnprocessableEntity("Failed to deserialize the JSON body into the target type: "
                                      f"type: unknown variant `{shown}`, expected `fcm` or `apns`")
        await service.register(device_id, token, token_type)
        return EMPTY_OK

    router.add("PUT", "/v1/push-tokens", register_token, name="push_tokens.register", meta=STANDARD)
