"""A lean RESP2 client for the bus's hot path: pipelined commands and one pattern subscription.

redis-py costs ~18 us of client CPU per pipelined command and ~36 us per delivered pub/sub
message on this kind of machine; a plain protocol costs well under one (performance.md). The
coordinator sends the per-request commands (PUBLISH, GET/SET of idempotency keys, ZADD/ZREM of push
jobs, PING) and runs its subscriber through this module; the rare commands (tickets, the lease
script) stay on ``redis.asyncio``.

One connection carries any number of pipelines in flight: replies come back in order, so each
command is a future in a FIFO. On a subscriber connection, replies nobody waits for (``pmessage``,
``psubscribe`` confirmations, ``pong``) go to the ``on_push`` callback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Union

from redis.asyncio.connection import parse_url

__all__ = ["RespError", "RespProtocolError", "RespProtocol", "encode_command", "encode_publish", "parse_reply",
           "Incomplete", "open_connection"]

Arg = Union[bytes, str, int, float]

MAX_BULK_BYTES = 512 * 1024 * 1024  # Redis' own proto-max-bulk-len default
MAX_ARRAY_ITEMS = 1 << 20
MAX_DEPTH = 8  # our replies nest at most twice (pmessage, EVAL); anything deeper is not Redis
MAX_LINE_BYTES = 64 * 1024  # a status, error or length line; a longer one means a broken stream


class RespError(Exception):
    """An error reply (``-ERR ...``): that command failed; the connection is fine."""


class RespProtocolError(Exception):
    """The byte stream is not RESP: the connection is unusable and gets closed."""


class Incomplete(Exception):
    """More bytes are needed for the next reply."""


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings (floats as ``repr``, like redis-py)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, bool):
            raise TypeError("a bool is not a Redis argument")
        elif isinstance(a, int):
            b = b"%d" % a
        elif isinstance(a, float):
            b = repr(a).encode()
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def encode_publish(channel: str, payload: bytes) -> bytes:
    """``PUBLISH channel payload``, as encode_command would write it, in one step: the bus sends
    one per woken device per send request, and the general encoder's per-argument type checks
    cost several times this (bench/RESULTS.md)."""
    name = channel.encode()
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(name), name, len(payload), payload)


def parse_reply(buf: bytes | bytearray, pos: int, depth: int = 0) -> tuple[Any, int]:
    """The reply starting at ``pos`` and the position after it; raises Incomplete when ``buf``
    ends first. Error replies are returned (not raised) as RespError values."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > MAX_LINE_BYTES:
            raise RespProtocolError("reply line too long")
        raise Incomplete  # a fresh one: re-raising one instance would grow its traceback forever
    kind = buf[pos]
    line = buf[pos + 1:end]
    if kind == 36:  # $ bulk string
        n = _length(line)
        if n < 0:
            return None, end + 2
        if n > MAX_BULK_BYTES:
            raise RespProtocolError("bulk string too long")
        start = end + 2
        stop = start + n
        if len(buf) < stop + 2:
            raise Incomplete  # a fresh one, as above
        if buf[stop] != 13 or buf[stop + 1] != 10:
            raise RespProtocolError("bulk string not terminated by CRLF")
        return bytes(buf[start:stop]), stop + 2
    if kind == 58:  # : integer
        return _integer(line), end + 2
    if kind == 43:  # + simple string
        return bytes(line), end + 2
    if kind == 45:  # - error
        return RespError(bytes(line).decode("utf-8", "replace")), end + 2
    if kind == 42:  # * array
        n = _length(line)
        if n < 0:
            return None, end + 2
        if n > MAX_ARRAY_ITEMS or depth >= MAX_DEPTH:
            raise RespProtocolError("array too large or nested too deep")
        items = []
        p = end + 2
        for _ in range(n):
            item, p = parse_reply(buf, p, depth + 1)
            items.append(item)
        return items, p
    raise RespProtocolError(f"unknown reply type {bytes((kind,))!r}")


def _integer(line: bytes | bytearray) -> int:
    if not line or len(line) > 20:
        raise RespProtocolError("bad integer")
    try:
        return int(line)
    except ValueError:
        raise RespProtocolError("bad integer") from None


def _length(line: bytes | bytearray) -> int:
    n = _integer(line)
    if n < -1:
        raise RespProtocolError("bad length")
    return n


class _Batch:
    """The replies of one ``send_batch``: collected in order, handed over at once."""

    __slots__ = ("future", "replies", "count")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future, self.replies, self.count = future, [], count


class RespProtocol(asyncio.Protocol):
    """One Redis connection: ``send`` writes commands and returns one future per reply, in order;
    ``send_batch`` one future for all of a pipeline's replies."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_push: Callable[[Any], None] | None = None) -> None:
        self._loop = loop
        self._on_push = on_push
        self._buf = bytearray()
        self._waiters: deque[asyncio.Future | _Batch] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.received = 0  # replies so far: the subscriber's health check watches it

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                value, pos = parse_reply(buf, pos)
                self.received += 1
                self._dispatch(value)
        except Incomplete:
            pass
        except RespProtocolError:
            self.abort()
            return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        err = ConnectionError("redis connection lost")
        while self._waiters:
            waiter = self._waiters.popleft()
            fut = waiter.future if type(waiter) is _Batch else waiter
            if not fut.done():
                fut.set_exception(err)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- use ---------------------------------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, payload: bytes, replies: int) -> list[asyncio.Future]:
        """Write encoded commands; one future per expected reply (an error reply is its exception)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("redis connection is closed")
        create = self._loop.create_future
        futures = [create() for _ in range(replies)]
        self._waiters.extend(futures)
        transport.write(payload)
        return futures

    def send_batch(self, payload: bytes, replies: int) -> asyncio.Future[list[Any]]:
        """Write ``replies`` (> 0) encoded commands; one future for the list of their replies, an
        error reply as its RespError value (a pipeline's commands without a future each: the
        per-request commands of the bus, performance.md). ConnectionError when the link drops
        first; a cancelled future drops its replies as they come, keeping the order."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("redis connection is closed")
        future = self._loop.create_future()
        self._waiters.append(_Batch(future, replies))
        transport.write(payload)
        return future

    async def call(self, *args: Arg) -> Any:
        return await self.send(encode_command(args), 1)[0]

    def abort(self) -> None:
        """Close at once; every waiting command fails with ConnectionError."""
        transport = self._transport
        if transport is not None:
            transport.abort()  # connection_lost follows and fails the waiters

    def _dispatch(self, value: Any) -> None:
        waiters = self._waiters
        if waiters:
            head = waiters[0]
            if type(head) is _Batch:
                replies = head.replies
                replies.append(value)
                if len(replies) == head.count:
                    waiters.popleft()
                    if not head.future.done():
                        head.future.set_result(replies)
                return
            fut = waiters.popleft()
            if fut.done():  # its caller gave up (timeout): the reply is dropped, order is kept
                return
            if isinstance(value, RespError):
                fut.set_exception(value)
            else:
                fut.set_result(value)
        elif self._on_push is not None:
            self._on_push(value)
        else:
            raise RespProtocolError("a reply nobody asked for")


async def open_connection(url: str, timeout_s: float,
                          on_push: Callable[[Any], None] | None = None) -> RespProtocol:
    """Connect to ``redis://``, ``rediss://`` or ``unix://`` and run AUTH/SELECT from the URL
    (parsed by redis-py's own ``parse_url``, so both clients read a URL the same way)."""
    opts = parse_url(url)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        if "path" in opts:
            _, proto = await loop.create_unix_connection(lambda: RespProtocol(loop, on_push), opts["path"])
        else:
            host, port = opts.get("host", "localhost"), int(opts.get("port", 6379))
            tls = _tls_context(opts) if url.startswith("rediss://") else None
            _, proto = await loop.create_connection(lambda: RespProtocol(loop, on_push), host, port, ssl=tls,
                                                    server_hostname=host if tls is not None else None)
        try:
            handshake: list[Sequence[Arg]] = []
            if opts.get("password") is not None:
                user = opts.get("username")
                handshake.append(("AUTH", user, opts["password"]) if user else ("AUTH", opts["password"]))
            if opts.get("db"):
                handshake.append(("SELECT", int(opts["db"])))
            if handshake:
                futures = proto.send(b"".join(encode_command(c) for c in handshake), len(handshake))
                for fut in futures:
                    await fut
        except BaseException:
            proto.abort()
            raise
    return proto


def _tls_context(opts: dict[str, Any]) -> ssl.SSLContext:
    """rediss://: the system's trust store (or ``ssl_ca_certs``); ``ssl_cert_reqs=none`` turns
    verification off, as it does for redis-py."""
    ctx = ssl.create_default_context(cafile=opts.get("ssl_ca_certs"))
    reqs = opts.get("ssl_cert_reqs")
    if isinstance(reqs, str) and reqs.lower() == "none":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.get("ssl_certfile"):
        ctx.load_cert_chain(opts["ssl_certfile"], opts.get("ssl_keyfile"))
    return ctx
