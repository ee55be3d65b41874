"""The WebSocket hand-off: a real picows client through the front door, and every way it can fail."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import struct

import picows
import pytest

from obscura import errors
from obscura.http import GatewayHandoff, Response, Router, error_response
from obscura.http.protocol import HttpConnection
from tests.http.support import RawConn, make_settings


class EchoListener(picows.WSListener):
    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_bytes())


class ClientListener(picows.WSListener):
    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[picows.WSMsgType, bytes]] = asyncio.Queue()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        self.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))


async def authorize(request):  # noqa: ANN001
    if request.query.get("ticket") != ["good"]:
        raise errors.Unauthorized()
    request.state["device"] = "d1"
    return EchoListener


def gateway(authorizer=authorize) -> GatewayHandoff:  # noqa: ANN001
    return GatewayHandoff(authorizer, settings=make_settings(ws_max_frame_bytes=1024 * 1024))


def router() -> Router:
    r = Router()

    async def ok(request):  # noqa: ANN001
        return Response(200, b"ok")

    r.add("GET", "/ok", ok)
    return r


def upgrade_request(ticket: str = "good", key: str | None = None, version: str = "13",
                    connection: str = "Upgrade", extra: str = "") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (f"GET /v1/gateway?ticket={ticket} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            f"Connection: {connection}\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


async def read_server_frame(conn: RawConn) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(conn.reader.readexactly(2), 5)
    assert second & 0x80 == 0  # server frames are never masked
    return first & 0x0F, await conn.reader.readexactly(second & 0x7F)


async def test_picows_client_exchanges_frames_through_the_front_door(serve) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    transport, client = await picows.ws_connect(ClientListener, f"ws://127.0.0.1:{server.port}/v1/gateway?ticket=good")
    try:
        transport.send(picows.WSMsgType.TEXT, b"hello")
        transport.send(picows.WSMsgType.BINARY, b"\x00\xff" * 1000)
        assert await asyncio.wait_for(client.frames.get(), 5) == (picows.WSMsgType.TEXT, b"hello")
        assert await asyncio.wait_for(client.frames.get(), 5) == (picows.WSMsgType.BINARY, b"\x00\xff" * 1000)
        assert server.connections == 0  # the socket belongs to the gateway now
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        await asyncio.wait_for(transport.wait_disconnected(), 5)


async def test_nothing_of_the_http_connection_outlives_the_hand_off(serve) -> None:  # noqa: ANN001
    # uvloop's transport keeps the previous protocol's bound data_received when the new protocol
    # has none (picows reads through get_buffer): the HTTP connection, its finished serve task and
    # request lived as long as the session (~2 KiB and 8 tracked objects per idle session).
    server = await serve(router(), gateway=gateway())
    transport, client = await picows.ws_connect(ClientListener, f"ws://127.0.0.1:{server.port}/v1/gateway?ticket=good")
    try:
        transport.send(picows.WSMsgType.TEXT, b"hello")
        assert await asyncio.wait_for(client.frames.get(), 5) == (picows.WSMsgType.TEXT, b"hello")
        gc.collect()
        assert [o for o in gc.get_objects() if type(o) is HttpConnection and o.server is server] == []
        transport.send(picows.WSMsgType.TEXT, b"still there")   # and the session goes on
        assert await asyncio.wait_for(client.frames.get(), 5) == (picows.WSMsgType.TEXT, b"still there")
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        await asyncio.wait_for(transport.wait_disconnected(), 5)


async def test_frames_in_the_upgrade_packet_are_not_lost(serve) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    conn = await RawConn.open(server.port)
    # A normal request, the upgrade and two frames, all in one write.
    await conn.send(b"GET /ok HTTP/1.1\r\n\r\n" + upgrade_request(connection="keep-alive, Upgrade",
                                                                 extra="X-Request-ID: ws-rid\r\n")
                    + client_frame(0x1, b"first") + client_frame(0x2, b"\x01\x02second"))
    assert (await conn.response()).body == b"ok"
    switching = await conn.response()
    assert switching.status == 101 and switching.header("upgrade").lower() == "websocket"
    assert switching.header("x-request-id") == "ws-rid"
    assert await read_server_frame(conn) == (0x1, b"first")
    assert await read_server_frame(conn) == (0x2, b"\x01\x02second")
    await conn.send(client_frame(0x8, struct.pack("!H", 1000)))
    assert (await read_server_frame(conn))[0] == 0x8
    conn.close()


async def test_rejected_authorize_is_401_json_without_upgrade(serve) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    conn = await RawConn.open(server.port)
    await conn.send(upgrade_request(ticket="bad") + client_frame(0x1, b"ignored"))
    resp = await conn.response()
    assert resp.status == 401 and resp.json() == {"error": "Unauthorized"}
    assert resp.header("content-type") == "application/json" and resp.header("connection") == "close"
    assert await conn.closed_by_server()
    with pytest.raises(picows.WSError):
        await picows.ws_connect(ClientListener, f"ws://127.0.0.1:{server.port}/v1/gateway?ticket=bad")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (upgrade_request(key="not-base64!"), 400),
    (upgrade_request(key=base64.b64encode(b"short").decode()), 400),
    (upgrade_request(key=""), 400),
    (upgrade_request(version="12"), 400),
    (upgrade_request(extra="Content-Length: 5\r\n"), 400),
    (b"GET /v1/gateway?ticket=good HTTP/1.1\r\nHost: t\r\n\r\n", 400),  # not an upgrade at all
    (b"GET /v1/gateway?ticket=good HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 400),
    (upgrade_request().replace(b"GET", b"POST", 1), 405),
], ids=["key-chars", "key-length", "key-empty", "version", "body", "plain-get", "h2c", "post"])
async def test_malformed_upgrades_get_clean_json_errors(serve, request_bytes: bytes, status: int) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    conn = await RawConn.open(server.port)
    await conn.send(request_bytes)
    resp = await conn.response()
    assert resp.status == status and set(resp.json()) == {"error"}
    if status == 405:
        assert resp.header("allow") == "GET"
    conn.close()


async def test_hooks_guard_the_gateway_and_a_failing_factory_is_500(serve) -> None:  # noqa: ANN001
    async def limit(request):  # noqa: ANN001
        if request.route_name == "gateway" and request.query.get("ticket") == ["limited"]:
            return error_response(errors.TooManyRequests())
        return None

    async def broken_authorize(request):  # noqa: ANN001
        if request.query.get("ticket") == ["broken"]:
            def factory():
                raise RuntimeError("listener construction failed")
            return factory
        return await authorize(request)

    server = await serve(router(), gateway=gateway(broken_authorize), hooks=(limit,))
    conn = await RawConn.open(server.port)
    await conn.send(upgrade_request(ticket="limited"))
    assert (await conn.response()).status == 429
    conn.close()
    conn = await RawConn.open(server.port)
    await conn.send(upgrade_request(ticket="broken"))
    resp = await conn.response()
    assert resp.status == 500 and resp.json() == {"error": "Internal server error"}
    conn.close()


async def test_other_upgrades_are_served_as_plain_http_then_closed(serve) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    resp = await conn.response()
    assert resp.status == 200 and resp.body == b"ok" and resp.header("connection") == "close"
    assert await conn.closed_by_server()


async def test_without_a_gateway_the_path_is_just_a_404(serve) -> None:  # noqa: ANN001
    server = await serve(router())
    conn = await RawConn.open(server.port)
    await conn.send(upgrade_request())
    resp = await conn.response()
    assert resp.status == 404 and resp.json() == {"error": "Not found"}
    conn.close()


async def test_open_websockets_survive_http_shutdown_accounting(serve) -> None:  # noqa: ANN001
    server = await serve(router(), gateway=gateway())
    transport, client = await picows.ws_connect(ClientListener, f"ws://127.0.0.1:{server.port}/v1/gateway?ticket=good")
    await server.shutdown(1)  # HTTP drain does not wait on sockets the gateway owns
    transport.send(picows.WSMsgType.TEXT, b"still here")
    assert await asyncio.wait_for(client.frames.get(), 5) == (picows.WSMsgType.TEXT, b"still here")
    transport.send_close(picows.WSCloseCode.OK)
    await asyncio.wait_for(transport.wait_disconnected(), 5)
