"""The parsed HTTP request: headers, path, query, and a flow-controlled body (buffered or streamed)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from obscura import errors

if TYPE_CHECKING:
    from obscura.http.router import Route

__all__ = ["Headers", "Request", "ClientDisconnected", "request_id_from"]

# Pause the socket once this much unread body is queued; resume below the low mark. Small on
# purpose: an upload of any size holds at most about one socket read plus this in memory.
BODY_HIGH_WATER_BYTES = 64 * 1024
BODY_LOW_WATER_BYTES = 16 * 1024
_REQUEST_ID_MAX = 200
_RANDOM_IDS_PER_READ = 256


def _random_hex_ids() -> Iterator[str]:
    """32 hex digits of os.urandom per item, read 256 ids at a time: one getrandom() system call
    per request cost ~2 us on the VMs of performance.md, a slice costs next to nothing."""
    while True:
        h = os.urandom(16 * _RANDOM_IDS_PER_READ).hex()
        for i in range(0, len(h), 32):
            yield h[i:i + 32]


_next_random_hex = _random_hex_ids().__next__


def _after_fork() -> None:  # a forked child must not hand out its parent's remaining ids
    global _next_random_hex
    _next_random_hex = _random_hex_ids().__next__


os.register_at_fork(after_in_child=_after_fork)


def request_id_from(value: str | None) -> str:
    """The client's X-Request-ID when it is sane (spec §2.1 keeps it verbatim), else a fresh UUIDv4."""
    if value and len(value) <= _REQUEST_ID_MAX and value.isascii() and value.isprintable():
        return value
    # str(uuid.uuid4()) without building a UUID object (a third of the cost, once per request)
    h = _next_random_hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class ClientDisconnected(errors.BadRequest):
    """The peer went away before the request body was complete (nobody is left to answer)."""

    default_message = "Client disconnected"


class Headers:
    """Case-insensitive, ordered, multi-valued request headers. Names are stored lowercased."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items = items if items is not None else []

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in arrival order (duplicates preserved)."""
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:  # names only: values may be credentials
        return f"Headers({[k for k, _ in self._items]!r})"


class _FlowControl:
    """What a body needs from its connection: pause/resume reading and the 100-continue reply."""

    def pause_body_reading(self) -> None: ...
    def resume_body_reading(self) -> None: ...
    def send_continue(self) -> None: ...


class Body:
    """The request body as a queue of chunks fed by the parser and drained by the handler."""

    __slots__ = ("_chunks", "_buffered", "complete", "_error", "_waiter", "_flow", "_paused",
                 "received", "_expect_continue", "consumed", "high_water")

    def __init__(self, flow: _FlowControl, *, expect_continue: bool = False,
                 high_water: int = BODY_HIGH_WATER_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self.complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._flow = flow
        self._paused = False
        self.received = 0
        self._expect_continue = expect_continue
        self.consumed = False
        self.high_water = high_water

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    # -- producer side (the protocol) ---------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.received += len(chunk)
        if self._buffered > self.high_water and not self._paused:
            self._paused = True
            self._flow.pause_body_reading()
        self._wake()

    def feed_eof(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self.complete and self._error is None:
            self._error = exc
            self._wake()

    def discard(self) -> None:
        """Drop what is queued (the handler is done with this request)."""
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._flow.resume_body_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- consumer side (the handler) ----------------------------------------------------------
    def _start(self) -> None:
        if self.consumed:
            raise RuntimeError("the request body was already consumed")
        self.consumed = True
        if self._expect_continue and not self.complete and self.received == 0:
            # RFC 9110 §10.1.1: the client waits for this before sending the body.
            self._expect_continue = False
            self._flow.send_continue()

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= BODY_LOW_WATER_BYTES:
                    self._paused = False
                    self._flow.resume_body_reading()
                yield chunk
            elif self.complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter


class Request:
    """One HTTP request as handlers see it."""

    __slots__ = ("method", "path", "raw_path", "query_string", "_query", "headers", "path_params",
                 "route", "route_name", "endpoint", "request_id", "content_length", "http_version",
                 "keep_alive", "state", "client_host", "_body", "_body_bytes", "max_body_bytes",
                 "upgrade", "chunked", "received_at")

    def __init__(self, method: str, raw_path: str, path: str, query_string: str, headers: Headers,
                 *, body: Body | None = None, request_id: str = "", content_length: int | None = None,
                 http_version: str = "1.1", keep_alive: bool = True, max_body_bytes: int = 2 * 1024 * 1024,
                 client_host: str | None = None, chunked: bool = False) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = path
        self.query_string = query_string
        self._query: dict[str, list[str]] | None = None
        self.headers = headers
        self.path_params: dict[str, str] = {}
        self.route: str | None = None
        self.route_name: str | None = None
        self.endpoint: Route | None = None
        self.request_id = request_id
        self.content_length = content_length
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.state: dict[str, Any] = {}
        self.client_host = client_host
        self._body = body
        self._body_bytes: bytes | None = None
        self.max_body_bytes = max_body_bytes
        self.upgrade = False
        self.chunked = chunked
        self.received_at = time.perf_counter()  # headers parsed (delivery latency metric)

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string parsed once, blank values kept (``?a=&b=1`` -> {"a": [""], "b": ["1"]})."""
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True) if self.query_string else {}
        return self._query

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def buffered_bytes(self) -> int:
        """Body bytes received but not yet consumed (bounded by flow control)."""
        return self._body.buffered_bytes if self._body is not None else 0

    def require_content_length(self) -> int:
        """The declared Content-Length; a body without one (chunked) is a 411."""
        if self.content_length is None:
            raise errors.LengthRequired()
        return self.content_length

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, at most ``limit`` bytes (default server_max_body_bytes), else a 413."""
        if self._body_bytes is not None:
            return self._body_bytes
        limit = self.max_body_bytes if limit is None else limit
        body = self._body
        if body is None:
            self._body_bytes = b""
            return b""
        if self.content_length is not None and self.content_length > limit:
            raise errors.PayloadTooLarge()  # decided from the header, before the body is sent
        body._start()
        parts: list[bytes] = []
        total = 0
        async for chunk in body.chunks():
            total += len(chunk)
            if total > limit:  # a chunked body (no declared length) that keeps going
                raise errors.PayloadTooLarge()
            parts.append(chunk)
        self._body_bytes = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._body_bytes

    def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, never buffered whole: the socket pauses when the handler lags."""
        if self._body is None:
            return _empty()
        self._body._start()
        return self._body.chunks()

    def __repr__(self) -> str:  # no query string or headers: they may carry tickets and tokens
        return f"<Request {self.method} {self.route or self.path} id={self.request_id}>"


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator
