"""Fuzz target for the front door: arbitrary bytes into HttpConnection over a fake transport.

Every input must end in well-formed HTTP responses and a close (or a keep-alive connection that
is idle), never an unhandled exception, a hang, or more buffered body bytes than the flow-control
high-water mark allows. The first byte picks how the input is cut into socket reads, so the
parser also sees every split point.

Run:   .venv/bin/python fuzz/http_target.py /tmp/http-corpus fuzz/corpus/http -max_total_time=600
"""

from __future__ import annotations

import asyncio
import logging
import re

from obscura.api.common import json_body
from obscura.config import load_settings
from obscura.http.protocol import MAX_PIPELINED, HttpConnection
from obscura.http.request import BODY_HIGH_WATER_BYTES
from obscura.http.response import Response, StreamResponse, json_response
from obscura.http.router import Router
from obscura.http.server import HttpServer

__all__ = ["check"]

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [ -~]*\r\n")
_SETTLE_ROUNDS = 400  # event-loop turns allowed after EOF; serving one queued request takes a few
_MAX_BUFFERED = 4 * BODY_HIGH_WATER_BYTES + 256 * 1024  # high water plus one (fake) socket read


class FakeTransport(asyncio.Transport):
    """Records writes and honours pause_reading like a real socket (unread bytes stay "in the kernel")."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.eof_written = False
        self.paused = False
        self.protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data) -> None:
        assert not self.closed and not self.eof_written, "write after close"
        self.out += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


async def _echo(request):
    body = await request.read()
    return Response(200, body, content_type="application/octet-stream")


async def _json(request):
    body = await json_body(request)
    return json_response({"name": body.str("name", optional=True), "n": body.int32("n", optional=True)})


async def _stream(request):
    total = 0
    async for chunk in request.stream():
        total += len(chunk)

    async def chunks():
        yield b"x" * min(total, 100)
    return StreamResponse(200, chunks(), content_type="application/octet-stream")


def _server(loop: asyncio.AbstractEventLoop) -> HttpServer:
    router = Router()
    router.add("POST", "/echo", _echo, name="echo")
    router.add("PUT", "/json/{id}", _json, name="json")
    router.add("POST", "/upload", _stream, name="upload", stream_body=True)
    router.add("GET", "/", _echo, name="root")
    settings = load_settings(environ={}, server_max_body_bytes=64 * 1024, server_access_log=False,
                             server_max_header_bytes=4096, server_max_headers=32)
    logger = logging.getLogger("fuzz.http")
    logger.disabled = True  # a parser-callback bug is also an assertion below, via the 500 count
    server = HttpServer(router, settings=settings, logger=logger, access_log=False, observer=_Methods())
    server.loop = loop
    return server


def _chunks(data: bytes) -> list[bytes]:
    if not data:
        return []
    step = data[0] % 17 or len(data)  # 0: one read; else reads of 1..16 bytes
    body = data[1:]
    return [body[i:i + step] for i in range(0, len(body), step)] or [b""]


class _Methods:
    """A request observer that records the methods served, in order (HEAD answers carry no body)."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def on_request_start(self, req):
        self.methods.append(req.method)

    def on_exception(self, req, exc) -> None:
        pass

    def on_request_end(self, req, state, status: int) -> None:
        pass


def _parse_responses(out: bytes, methods: list[str]) -> list[int]:
    """Status codes of the concatenated responses; AssertionError when the bytes are not HTTP."""
    statuses, pos = [], 0
    while pos < len(out):
        m = _STATUS_LINE.match(out, pos)
        assert m, ("not a status line", bytes(out[pos:pos + 80]))
        status = int(m.group(1))
        head_end = out.find(b"\r\n\r\n", pos)
        assert head_end != -1, "unterminated response head"
        head = bytes(out[m.end():head_end]).lower()
        pos = head_end + 4
        if status == 100:
            continue
        head_request = len(statuses) < len(methods) and methods[len(statuses)] == "HEAD"
        statuses.append(status)
        if head_request or status in (204, 304):
            continue
        length = re.search(rb"(?:^|\r\n)content-length: *([0-9]+)", head)
        if b"transfer-encoding: chunked" in head:
            while True:
                line_end = out.find(b"\r\n", pos)
                assert line_end != -1, "truncated chunk size"
                size = int(out[pos:line_end], 16)
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
        elif length:
            pos += int(length.group(1))
        else:  # close-delimited (an HTTP/1.0 client and a streamed body): the rest is the body
            assert b"connection: close" in head, "no length, no chunking, yet kept alive"
            pos = len(out)
    assert pos == len(out), "response bytes after the last response"
    return statuses


async def _run(server: HttpServer, data: bytes) -> None:
    server.observer.methods.clear()
    transport = FakeTransport()
    conn = HttpConnection(server)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    peak = 0
    for chunk in _chunks(data):
        rounds = 0
        while transport.paused and not transport.closed and rounds < 50:
            await asyncio.sleep(0)  # the handler drains the body, then reading resumes
            rounds += 1
        if transport.closed or transport.paused:
            break
        conn.data_received(chunk)
        body = conn._cur_body
        peak = max(peak, body.buffered_bytes if body is not None else 0)
        assert peak <= _MAX_BUFFERED, ("unbounded body buffering", peak)
        # llhttp cannot stop inside one read, so the bound is MAX_PIPELINED plus what one read holds.
        assert len(conn.queue) <= MAX_PIPELINED + 1 + len(chunk) // 16, "pipelined requests not bounded"
        assert len(conn.tail) <= len(data), "upgrade tail grew beyond the input"
        await asyncio.sleep(0)
    if not transport.closed and not conn.eof_received():
        transport.close()
    for _ in range(_SETTLE_ROUNDS):
        if transport.closed or transport.eof_written:
            break
        await asyncio.sleep(0)
    # Closed, half-closed after the last response, or idle after answering a half-close: no hang.
    assert transport.closed or transport.eof_written or (not conn.busy and not conn.queue), "hang"
    methods = server.observer.methods
    statuses = _parse_responses(bytes(transport.out), methods)
    methods.clear()
    assert 500 not in statuses, "a 500 from hostile bytes is a front-door bug"
    if not transport.closed:
        transport.close()
    await asyncio.sleep(0)
    for task in list(server._tasks):
        task.cancel()
    if server._tasks:
        await asyncio.wait(list(server._tasks), timeout=1)


_loop: asyncio.AbstractEventLoop | None = None
_srv: HttpServer | None = None


def check(data: bytes) -> None:
    """Raise AssertionError when the front door misbehaves on ``data``."""
    global _loop, _srv
    if _loop is None:
        _loop = asyncio.new_event_loop()
        _srv = _server(_loop)
    _loop.run_until_complete(_run(_srv, bytes(data)))


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    run_fuzzer(check)


if __name__ == "__main__":
    main()
