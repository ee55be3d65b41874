"""Helpers for the HTTP tests: start a server on a random port, speak exact bytes over raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from obscura.config import Settings, load_settings
from obscura.http import GatewayHandoff, HttpServer, Router

UUID4_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


def make_settings(**overrides: Any) -> Settings:
    return load_settings(environ={}, **overrides)


async def start_server(router: Router | None = None, *, gateway: GatewayHandoff | None = None,
                       hooks: tuple = (), settings: Settings | None = None, **overrides: Any) -> HttpServer:
    server = HttpServer(router or Router(), settings=settings or make_settings(**overrides),
                        gateway=gateway, hooks=hooks)
    await server.start("127.0.0.1", 0)
    return server


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawConn:
    """One TCP connection on which tests write exact bytes and parse responses one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, timeout: float = 5.0) -> RawResponse:
        return await asyncio.wait_for(self._response(head), timeout)

    async def _response(self, head: bool) -> RawResponse:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        resp = RawResponse(status, headers)
        if head or status < 200 or status in (204, 304):
            return resp
        length = resp.header("content-length")
        if length is not None:
            resp.body = await self.reader.readexactly(int(length))
        elif (resp.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            resp.body = b"".join(parts)
        else:
            resp.body = await self.reader.read()
        return resp

    async def read_to_eof(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes (fails the test on timeout)."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            return True
        return rest == b""

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Vanish: close with an RST (SO_LINGER 0), so the server sees the connection lost at once."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
