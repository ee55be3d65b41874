"""Hostile bytes at the front door and in bodies: documented 4xx, no smuggling, no 500 (issue 9)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import picows

from obscura._proto import obscura_pb2 as pb
from tests.fixtures.server import running_app
from tests.adversity.rawhttp import exchange, statuses
from tests.support.users import bearer, register_user
from tests.support.ws import connect, get_ticket, send, submission


async def test_conflicting_content_length_and_transfer_encoding_is_refused(app):
    # The body hides a second request: answering it would be request smuggling (RFC 9112 §6.3).
    raw = await exchange(app.port, b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/devices HTTP/1.1\r\n\r\n")
    assert statuses(raw) == [400]


async def test_duplicate_content_length_and_bad_transfer_encoding_are_refused(app):
    for head in (b"Content-Length: 3\r\nContent-Length: 40\r\n", b"Transfer-Encoding: gzip, chunked, x\r\n",
                 b"Content-Length: -1\r\n", b"Content-Length: 1e3\r\n"):
        raw = await exchange(app.port, b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\n" + head +
                             b"\r\nabc\r\n0\r\n\r\nGET /livez HTTP/1.1\r\n\r\n")
        assert statuses(raw) == [400], (head, raw[:200])


async def test_oversized_body_and_headers(app, http):
    big = b"x" * (app.settings.server_max_body_bytes + 1)
    res = await http.post("/v1/messages", content=big, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code in (401, 413)  # auth first or size first; never read whole
    user = await register_user(http)
    res = await http.post("/v1/messages", content=big,
                          headers={**bearer(user.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 413 and res.json() == {"error": res.json()["error"]}
    raw = await exchange(app.port, b"GET /v1/devices HTTP/1.1\r\n" + b"X-A: " + b"a" * 20000 + b"\r\n\r\n")
    assert statuses(raw) == [431]


async def test_json_hostility_is_a_4xx(http):
    user = await register_user(http)
    h = {**bearer(user.token), "content-type": "application/json"}
    cases = [(b"[" * 100_000 + b"]" * 100_000, 400), (b'{"name": "\xff\xfe"}', 400), (b'{"name": "\\ud800"}', 400),
             (b'{"name": 1e999}', 400), (b'{"name": 5}', 422), (b'{"name": "a", "name": "b"}', 200)]
    for body, status in cases:
        res = await http.put(f"/v1/devices/{user.device_id}", content=body, headers=h)
        assert res.status_code == status, (body[:30], res.text)
    res = await http.post("/v1/sessions", json={"username": "nul\x00name", "password": "password12345"})
    assert res.status_code == 401  # was a 500: PostgreSQL text cannot hold NUL (found by schemathesis)


async def test_json_shaped_bodies_to_the_protobuf_endpoint_are_400(http):
    user = await register_user(http)
    for body in (b'{"messages": 5}', b"[1]", b'{"messages": [{"deviceId": "x"}]}', b"{}" * 50):
        res = await http.post("/v1/messages", content=body, headers={
            **bearer(user.token), "Idempotency-Key": str(uuid.uuid4()), "content-type": "application/json"})
        assert res.status_code in (200, 400), res.text  # b"" / unknown fields decode to an empty request
        assert res.status_code != 200 or res.content == b""


async def test_unknown_protobuf_fields_are_skipped(http):
    alice, bob = await register_user(http), await register_user(http)
    sub = submission(bob.device_id, b"hi").SerializeToString() + b"\xa0\x06\x01" + b"\xaa\x06\x02ok"
    body = b"\x0a" + bytes([len(sub)]) + sub + b"\xf8\x07\x05"  # unknown fields 100, 101 and 127
    res = await http.post("/v1/messages", content=body,
                          headers={**bearer(alice.token), "Idempotency-Key": str(uuid.uuid4())})
    assert res.status_code == 200 and res.content == b""
    ws = await connect(http, bob)
    try:
        assert (await ws.next_envelope()).message == b"hi"
    finally:
        await ws.close()


async def test_websocket_text_and_garbage_frames_are_ignored_and_huge_ones_dropped(http, app):
    # Upstream ignores text frames and undecodable binary frames (spec §3.3): the session lives on.
    alice, user = await register_user(http), await register_user(http)
    ws = await connect(http, user)
    ws.transport.send(picows.WSMsgType.TEXT, b"hello \xff")
    ws.transport.send(picows.WSMsgType.BINARY, b"\xff\xff\xff")  # not a WebSocketFrame
    ws.transport.send(picows.WSMsgType.BINARY, b"\x0a\x03\x0a\x01x")  # an ACK with a 1-byte id
    assert await ws.ping_pong(b"\x02") == b"\x02"
    await send(http, alice, submission(user.device_id, b"still here"))
    assert (await ws.next_envelope()).message == b"still here"
    await ws.close()
    # A peer that announces a frame over the limit is dropped before the payload arrives.
    ticket = await get_ticket(http, user)
    reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
    writer.write(f"GET /v1/gateway?ticket={ticket} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(b"\x82\xff" + (2**40).to_bytes(8, "big") + b"mask" + b"x" * 1000)
    rest = await asyncio.wait_for(reader.read(-1), 10)  # the server closes; it never buffers 1 TiB
    # Before it reads the bad header the session may already have sent a frame of its own (the
    # PreKeyStatus of a device low on keys); after it, nothing but a close frame.
    opcodes = _server_opcodes(rest)
    assert set(opcodes) <= {0x2, 0x8} and 0x8 not in opcodes[:-1], opcodes
    writer.close()


def _server_opcodes(data: bytes) -> list[int]:
    """The opcodes of the complete, unmasked frames in ``data`` (a server's side of a socket)."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        length, head = data[pos + 1] & 0x7F, 2
        assert data[pos + 1] & 0x80 == 0, "server frames are never masked"
        if length == 126:
            length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        assert pos + head + length <= len(data), "a truncated frame"
        out.append(data[pos] & 0x0F)
        pos += head + length
    assert pos == len(data), "trailing bytes"
    return out


async def test_messages_to_a_never_reading_socket_stay_bounded(settings_factory):
    """A client that never reads: the pump waits on backpressure, so what the server holds for the
    socket stays about one batch; the rest waits in the database and arrives once the client reads."""
    batch_bytes = 256 * 1024
    async with running_app(settings_factory(ws_max_batch_bytes=batch_bytes)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=30) as http:
        alice, bob = await register_user(http), await register_user(http)
        ws = await connect(http, bob)
        ws.transport.underlying_transport.pause_reading()  # the kernel buffers fill, then the server's
        payload = b"p" * 50_000
        for _ in range(20):
            await send(http, alice, *[submission(bob.device_id, payload) for _ in range(10)])
        await asyncio.sleep(0.5)  # let the pump run into backpressure (not a timed assertion)
        sessions = list(node.gateway._sessions)
        assert len(sessions) == 1
        held = sessions[0].transport.underlying_transport.get_write_buffer_size()
        assert held <= 2 * batch_bytes + 64 * 1024 + 11 * len(payload), held
        ws.transport.underlying_transport.resume_reading()
        got = await ws.envelopes_for(200, timeout_s=60)
        assert len({e.id for e in got}) == 200
        await ws.close()
