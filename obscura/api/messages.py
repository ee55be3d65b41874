"""REST: POST /v1/messages (spec §2.10) and POST /v1/gateway/ticket (§2.11)."""

from __future__ import annotations

from obscura.api.common import Authenticator, require_device
from obscura.api.ratelimit import STANDARD
from obscura.coord import CoordinationError
from obscura.errors import InternalError
from obscura.gateway import TicketService
from obscura.http.request import Request
from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.messages import MessageService, parse_idempotency_key

__all__ = ["add_message_routes"]

_PROTOBUF = "application/octet-stream"  # not application/x-protobuf (spec §2.1)


def add_message_routes(router: Router, messages: MessageService, tickets: TicketService,
                       auth: Authenticator) -> None:
    async def send(request: Request) -> Response:
        claims = await auth(request)
        body = await request.read()  # buffered; above the body limit a 413 (spec §2.10)
        device_id = require_device(claims)
        key = parse_idempotency_key(request.headers.get("idempotency-key"))
        response = await messages.send(claims.user_id, device_id, key, body, request.received_at)
        return Response(200, response, content_type=_PROTOBUF)

    async def ticket(request: Request) -> Response:
        device_id = require_device(await auth(request))
        try:
            value = await tickets.issue(device_id)
        except CoordinationError:
            raise InternalError() from None  # "Failed to generate ticket" stays in the logs
        return json_response({"ticket": value}, status=201)

    router.add("POST", "/v1/messages", send, name="send_messages", meta=STANDARD)
    router.add("POST", "/v1/gateway/ticket", ticket, name="gateway_ticket", meta=STANDARD)
