"""WebSocket hand-off: a gateway upgrade leaves HTTP for a picows WSProtocol on the same socket."""

# Pinned picows range: >=2.3.1,<2.4 (pyproject.toml). This module builds picows' server-side
# ``picows.picows.WSProtocol`` directly, which picows does not export at top level; its positional
# arguments follow the order ``ws_create_server`` uses in picows 2.3.1 (picows/api.py,
# ``ws_protocol_factory``). Before widening the range, re-check that order and run
# tests/http/test_gateway.py. Recipe: decisions.md §2.

from __future__ import annotations

import asyncio
import binascii
import logging
from base64 import b64decode
from collections.abc import Awaitable, Callable
from typing import Any

from picows import WSAutoPingStrategy, WSListener, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows.picows import WSProtocol

from obscura import errors
from obscura.config import Settings
from obscura.http.request import Request
from obscura.http.router import Route

__all__ = ["GatewayHandoff", "ListenerFactory", "Authorizer"]

ListenerFactory = Callable[[], WSListener]
Authorizer = Callable[[Request], Awaitable[ListenerFactory]]


class _QuietLogger(logging.LoggerAdapter):
    """picows logs every accept and disconnect at INFO with peer addresses; we keep WARNING and up."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging API)
        return level >= logging.WARNING and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


class GatewayHandoff:
    """Authorizes a gateway upgrade, then hands the transport and its buffered bytes to picows.

    ``authorize(request)`` returns a zero-argument factory of the session's ``WSListener``, or
    raises an ObscuraError (rendered as that HTTP error, connection closed, no upgrade). Pass it
    to the constructor or override the method in a subclass.
    """

    def __init__(self, authorize: Authorizer | None = None, *, settings: Settings,
                 path: str = "/v1/gateway", logger: logging.Logger | None = None) -> None:
        self._authorize = authorize
        self.path = path
        self.route = Route("GET", path, None, "gateway")
        self._settings = settings
        self._ws_logger = _QuietLogger(logger or logging.getLogger("obscura.gateway.ws"), {})

    async def authorize(self, request: Request) -> ListenerFactory:
        if self._authorize is None:
            raise NotImplementedError("GatewayHandoff needs an authorize callable or an override")
        return await self._authorize(request)

    def validate(self, request: Request) -> None:
        """The upgrade must be one picows accepts; answer our own JSON 400 otherwise (spec §3.2)."""
        headers = request.headers
        if request.http_version != "1.1":
            raise errors.BadRequest("WebSocket upgrade requires HTTP/1.1")
        if (headers.get("upgrade") or "").strip().lower() != "websocket":
            raise errors.BadRequest("`Upgrade` header did not include 'websocket'")
        tokens = {t.strip().lower() for v in headers.getall("connection") for t in v.split(",")}
        if "upgrade" not in tokens:
            raise errors.BadRequest("Connection header did not include 'upgrade'")
        if (headers.get("sec-websocket-version") or "").strip() != "13":
            raise errors.BadRequest("WebSocket version not supported")
        if _key(request) is None:
            raise errors.BadRequest("`Sec-WebSocket-Key` header missing or invalid")
        if request.has_body:
            raise errors.BadRequest("WebSocket upgrade must not carry a body")

    def take_over(self, transport: asyncio.Transport, request: Request, listener: WSListener,
                  tail: bytes) -> WSProtocol:
        """Switch ``transport`` to picows and replay the upgrade plus any bytes that followed it.

        The replayed request is a normalised copy carrying only the handshake headers (already
        validated above), so picows' stricter parser (e.g. ``Connection: keep-alive, Upgrade``)
        agrees with ours; ``tail`` (frames sent right behind the upgrade) is passed on untouched.
        """
        s = self._settings
        # Like every response (spec §2.1), the 101 carries the request id.
        accepted = WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response({"X-Request-ID": request.request_id}), listener)
        ws = WSProtocol(
            None,                           # host+port (client side only)
            None,                           # ws_path (client side only)
            False,                          # is_client_side
            lambda _upgrade_request: accepted,
            self._ws_logger,
            True,                           # disconnect_on_exception
            float(s.server_header_timeout_secs),  # handshake timeout: we replay it at once
            False, 20.0, 20.0,              # auto-ping off (the session pings), idle, reply timeouts
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,                           # enable_auto_pong
            s.ws_max_frame_bytes,
            None,                           # extra_headers
            s.ws_read_buffer_bytes,
        )
        # uvloop's transport keeps the old protocol's bound data_received when the new protocol has
        # none (picows reads through get_buffer): the HTTP connection, and all it still refers to,
        # would live as long as the session. An interim protocol whose data_received is a shared
        # function takes that place first.
        transport.set_protocol(_DETACHED)  # type: ignore[arg-type]
        transport.set_protocol(ws)
        ws.connection_made(transport)
        _feed(ws, transport, _replayed_head(request) + tail)
        if not transport.is_closing():
            transport.resume_reading()
        return ws


def _no_data(data: bytes) -> None:
    """Never called: only what uvloop remembers as the transport's data_received after a switch."""


class _Detached:
    __slots__ = ()
    data_received = staticmethod(_no_data)  # the same function object every time, no bound method


_DETACHED = _Detached()


def _key(request: Request) -> str | None:
    key = (request.headers.get("sec-websocket-key") or "").strip()
    try:
        return key if key and len(b64decode(key.encode("ascii"), validate=True)) == 16 else None
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None


def _replayed_head(request: Request) -> bytes:
    return (f"GET {request.raw_path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {_key(request)}\r\n\r\n").encode("latin-1")


def _feed(ws: WSProtocol, transport: asyncio.Transport, data: bytes) -> None:
    """Copy ``data`` into picows' own read buffer, as the event loop would (it is a BufferedProtocol)."""
    view = memoryview(data)
    pos = 0
    while pos < len(data) and not transport.is_closing():
        buf = ws.get_buffer(len(data) - pos)
        n = min(len(buf), len(data) - pos)
        if n <= 0:
            break
        buf[:n] = view[pos:pos + n]
        ws.buffer_updated(n)
        pos += n
