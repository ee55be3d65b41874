"""One front-door HTTP/1.1 connection: parsing, limits, timers, flow control and the serving loop."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote

import httptools

from obscura import errors
from obscura.http.exchange import serve_one
from obscura.http.request import (BODY_HIGH_WATER_BYTES, Body, ClientDisconnected, Headers, Request,
                                  request_id_from)

if TYPE_CHECKING:
    from obscura.http.server import HttpServer

__all__ = ["HttpConnection"]

MAX_PIPELINED = 16  # parsed requests waiting behind the current one before we stop reading
LINGER_S = 1.0  # after our last response, keep draining input briefly so the close is not a reset

# Kinds of queued work.
HTTP, GATEWAY, FAILURE = 0, 1, 2


class HttpConnection(asyncio.Protocol):
    """Parses with httptools, queues requests in order and serves them from one task per connection."""

    __slots__ = ("server", "loop", "_max_header_bytes", "_max_headers", "_header_timeout_s", "_keepalive_s",
                 "_parser", "transport", "client_host", "queue", "_queue_waiter", "_task", "_url", "_hdrs",
                 "_header_bytes", "_raw_header_bytes", "_in_headers", "_cur_body", "_deadline", "_timer_kind",
                 "_on_deadline", "_req_deadline", "_req_expired", "_req_cancelling", "_timer", "_timer_at",
                 "busy", "closing", "dead", "upgraded", "tail", "eof", "lost", "handed_off",
                 "_lingering", "_read_paused", "_bodies_paused", "write_paused", "_drain_waiter", "__weakref__")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        s = server.settings
        self.loop = server.loop
        self._max_header_bytes = s.server_max_header_bytes
        self._max_headers = s.server_max_headers
        self._header_timeout_s = float(s.server_header_timeout_secs)
        self._keepalive_s = float(s.server_keepalive_timeout_secs)
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client_host: str | None = None
        self.queue: deque[tuple[Request | None, errors.ObscuraError | None, int]] = deque()
        self._queue_waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # the message being parsed
        self._url = b""
        self._hdrs: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._raw_header_bytes = 0
        self._in_headers = False
        self._cur_body: Body | None = None
        # Deadlines: at most one for the parser side ("header", "keepalive" or "linger") and one for
        # the request being served. One loop timer serves both and is re-armed lazily (_schedule):
        # a busy keep-alive connection moves its deadlines on every request without touching the
        # loop's timers, which cost more than the rest of the bookkeeping together.
        self._deadline: float | None = None
        self._timer_kind = ""
        self._on_deadline: Callable[[], object] | None = None
        self._req_deadline: float | None = None
        self._req_expired = False
        self._req_cancelling = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # states
        self.busy = False
        self.closing = False  # graceful shutdown: finish the current response, then close
        self.dead = False  # the parser stopped: an error, a timeout, or an upgrade
        self.upgraded = False
        self.tail = bytearray()  # bytes after an upgrade request
        self.eof = False
        self.lost = False
        self.handed_off = False
        self._lingering = False
        self._read_paused = False
        self._bodies_paused = 0
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_host = peer[0] if isinstance(peer, tuple) else None
        self.server._opened(self)
        self._arm("header", self._header_timeout_s, self._on_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self.dead:
            if self.upgraded:
                self.tail += data
            return
        was_in_headers = self._in_headers
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tail += data[exc.args[0]:]
            return
        except httptools.HttpParserError as exc:
            self.fail(self._error_of(exc))
            return
        if was_in_headers and self._in_headers:
            # httptools accumulates a header line until it is complete: bound the raw bytes too.
            self._raw_header_bytes += len(data)
            if self._raw_header_bytes > self._max_header_bytes:
                self.fail(errors.HeadersTooLarge())

    def eof_received(self) -> bool:
        if self._lingering:
            return False
        self.eof = True
        if self._cur_body is not None:
            self._cur_body.fail(ClientDisconnected())
        if not self.busy and not self.queue:
            return False  # nothing left to answer: let the transport close
        return True  # half-closed: still answer what was asked

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.release_parser()
        self.server._closed(self)
        if self._cur_body is not None:
            self._cur_body.fail(ClientDisconnected())
        for req, _, _ in self.queue:
            if req is not None and req._body is not None:
                req._body.fail(ClientDisconnected())
        self._wake_drain()
        self._wake_queue()

    def release_parser(self) -> None:
        """No more bytes will be parsed (the connection is gone or handed to the gateway): drop the
        parser and the timer. Both hold bound methods of this object, a reference cycle only a
        full GC pass would free: with thousands of upgraded sessions that is ~5 KiB each held
        until the next gen-2 collection (performance.md goal 4). A request still being served
        keeps its deadline (the timer then goes when it fires or the request ends)."""
        self._cancel_timer()
        if self._req_deadline is None and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parser = None  # type: ignore[assignment]
        self._hdrs = []

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_headers = True
        self._url = b""
        self._hdrs = []
        self._header_bytes = 0
        self._raw_header_bytes = 0
        if self._timer_kind != "header":
            self._arm("header", self._header_timeout_s, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url) + 16  # plus method and version
        if self._header_bytes > self._max_header_bytes:
            raise errors.HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes or len(self._hdrs) >= self._max_headers:
            raise errors.HeadersTooLarge()
        if self._in_headers:  # chunked trailers are only counted, never merged into the headers
            self._hdrs.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_timer()
        req, err, kind = self._build_request()
        if req.upgrade:
            self.dead = self.upgraded = True  # llhttp stops here; later bytes are the upgrade's
            self._update_reading()
        self._enqueue((req, err, kind))

    def on_body(self, chunk: bytes) -> None:
        if self._cur_body is not None:
            self._cur_body.feed(chunk)

    def on_message_complete(self) -> None:
        if self._cur_body is not None:
            self._cur_body.feed_eof()
            self._cur_body = None

    # -- request building -----------------------------------------------------------------------
    def _build_request(self) -> tuple[Request, errors.ObscuraError | None, int]:
        parser, server = self._parser, self.server
        headers = Headers(self._hdrs)
        err: errors.ObscuraError | None = None
        url = self._url
        if url.startswith(b"/"):  # origin-form, the usual case: no need for the URL parser
            target, _, query = url.partition(b"?")
        else:
            try:
                parsed = httptools.parse_url(url)  # absolute-form target (RFC 9112 §3.2.2)
                target, query = parsed.path or b"/", parsed.query or b""
            except httptools.HttpParserInvalidURLError:
                target, query, err = b"/", b"", errors.BadRequest("Invalid URL")
        raw_path = target.partition(b"#")[0].decode("latin-1")
        cl = headers.get("content-length")
        chunked = headers.get("transfer-encoding") is not None
        req = Request(parser.get_method().decode("ascii"), raw_path,
                      unquote(raw_path) if "%" in raw_path else raw_path,
                      query.partition(b"#")[0].decode("latin-1"), headers,
                      request_id=request_id_from(headers.get("x-request-id")),
                      content_length=int(cl) if cl is not None else None,
                      http_version=parser.get_http_version(), keep_alive=parser.should_keep_alive(),
                      max_body_bytes=server.settings.server_max_body_bytes,
                      client_host=self.client_host, chunked=chunked)
        req.upgrade = parser.should_upgrade()
        kind = HTTP
        gateway = server.gateway
        try:
            if gateway is not None and req.path == gateway.path:
                if req.method != "GET":
                    raise errors.MethodNotAllowed(headers=[("Allow", "GET")])
                req.endpoint, kind = gateway.route, GATEWAY
                if not req.upgrade:
                    raise errors.BadRequest("Connection header did not include 'upgrade'")
            else:
                req.endpoint, req.path_params = server.router.match(req.method, raw_path)
                if req.upgrade and req.has_body:
                    raise errors.BadRequest("Upgrade requests with a body are not supported")
        except errors.ObscuraError as exc:
            # Without its traceback: that holds this frame, which holds err (a reference cycle
            # per refused request, left to the garbage collector).
            err = err or exc.with_traceback(None)
        if req.endpoint is not None:
            req.route, req.route_name = req.endpoint.pattern, req.endpoint.name
        if req.has_body and not req.upgrade:
            expect = headers.get("expect")
            stream = req.endpoint is not None and req.endpoint.stream_body
            req._body = self._cur_body = Body(
                self, expect_continue=expect is not None and expect.lower() == "100-continue"
                and req.http_version == "1.1",
                high_water=BODY_HIGH_WATER_BYTES if stream else 4 * BODY_HIGH_WATER_BYTES)
        return req, err, kind

    def _error_of(self, exc: httptools.HttpParserError) -> errors.ObscuraError:
        cause = exc.__context__
        if isinstance(cause, errors.ObscuraError):
            return cause
        if cause is not None:  # a bug in a callback, not the client's fault
            self.server.logger.error("HTTP parser callback failed", exc_info=cause)
            return errors.InternalError()
        return errors.BadRequest("Malformed HTTP request")

    # -- queue and serving loop -----------------------------------------------------------------
    def _enqueue(self, item: tuple[Request | None, errors.ObscuraError | None, int]) -> None:
        self.queue.append(item)
        if len(self.queue) > MAX_PIPELINED:
            self._update_reading()
        if self._task is None:
            self._task = self.loop.create_task(self._serve_loop())
            self.server._track(self._task)
        else:
            self._wake_queue()

    def fail(self, err: errors.ObscuraError) -> None:
        """The byte stream is unusable: answer ``err`` in order, then close (never parse further)."""
        if self.dead:
            return
        self.dead = True
        self._cancel_timer()
        self._update_reading()
        body = self._cur_body
        if body is not None and not body.complete:
            body.fail(err)  # its handler (queued or running) sees the error; the response closes
        else:
            self._enqueue((None, err, FAILURE))

    async def _serve_loop(self) -> None:
        try:
            await self._serve_queue()
        except Exception:  # a bug here must not leave the socket hanging
            self.server.logger.error("HTTP connection loop failed", exc_info=True)
            self.abort()

    async def _serve_queue(self) -> None:
        while True:
            if self.lost or self.handed_off:
                return
            if not self.queue:
                if self.eof or self.closing or self.dead:
                    self.close()
                    return
                if not self._in_headers:
                    self._arm("keepalive", self._keepalive_s, self._on_keepalive_timeout)
                self._queue_waiter = self.loop.create_future()
                await self._queue_waiter
                continue
            item = self.queue.popleft()
            self._update_reading()
            self.busy = True
            try:
                keep = await serve_one(self, *item)
            finally:
                self.busy = False
            if not keep:
                if not self.handed_off:
                    self.close(linger=True)
                return

    def _wake_queue(self) -> None:
        waiter = self._queue_waiter
        if waiter is not None:
            self._queue_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control ---------------------------------------------------------------------------
    def pause_body_reading(self) -> None:
        self._bodies_paused += 1
        self._update_reading()

    def resume_body_reading(self) -> None:
        self._bodies_paused -= 1
        self._update_reading()

    def send_continue(self) -> None:
        if not self.lost and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _update_reading(self) -> None:
        t = self.transport
        if t is None or t.is_closing() or self.handed_off:
            return
        pause = not self._lingering and (self.dead or self._bodies_paused > 0 or len(self.queue) > MAX_PIPELINED)
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                t.pause_reading()
            else:
                t.resume_reading()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its low-water mark again."""
        while self.write_paused and not self.lost:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
        if self.lost:
            raise ClientDisconnected()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- deadlines, timers and closing ----------------------------------------------------------
    def _arm(self, kind: str, delay_s: float, callback: Callable[[], object]) -> None:
        self._deadline = self.loop.time() + delay_s
        self._timer_kind, self._on_deadline = kind, callback
        self._schedule(self._deadline)

    def _cancel_timer(self) -> None:
        # The loop timer stays: it finds nothing due when it fires and then stops.
        self._deadline, self._timer_kind, self._on_deadline = None, "", None

    def _schedule(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return  # it fires first and re-arms for whatever is due then
            timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        if self._req_deadline is not None and now >= self._req_deadline:
            self._req_deadline = None
            self._expire_request()
        if self._deadline is not None and now >= self._deadline:
            callback = self._on_deadline
            self._cancel_timer()
            callback()  # type: ignore[misc]
        pending = [d for d in (self._deadline, self._req_deadline) if d is not None]
        if pending and self._timer is None:
            # Early rather than exact: the deadlines that later requests set are then already
            # covered and need no re-arm.
            self._schedule(min(*pending, now + min(self._header_timeout_s, self._keepalive_s)))

    def begin_deadline(self, when: float) -> None:
        """Cancel the serving task at loop time ``when`` unless :meth:`end_deadline` comes first
        (the request's timeout; asyncio.timeout_at semantics without a timer per request)."""
        self._req_deadline = when
        self._req_expired = False
        self._req_cancelling = self._task.cancelling() if self._task is not None else 0
        self._schedule(when)

    def end_deadline(self) -> bool:
        """Leave the request's deadline; True when it expired and the task's pending cancellation
        was ours alone (the caller answers 408 instead of propagating CancelledError)."""
        self._req_deadline = None
        if not self._req_expired:
            return False
        self._req_expired = False
        return self._task is not None and self._task.uncancel() <= self._req_cancelling

    def _expire_request(self) -> None:
        task = self._task
        if task is not None and not task.done():
            self._req_expired = True
            task.cancel()

    def _on_header_timeout(self) -> None:
        if self._in_headers:
            self.fail(errors.RequestTimeout())  # slowloris: 408 once earlier responses are out
        elif not self.busy and not self.queue:
            self.close()  # connected but never sent a byte

    def _on_keepalive_timeout(self) -> None:
        if not self.busy and not self.queue and not self._in_headers:
            self.close()

    def close(self, linger: bool = False) -> None:
        """Close now, or (``linger``) half-close and drain input briefly so the peer gets our reply."""
        t = self.transport
        if t is None or t.is_closing() or self.handed_off or self.lost:
            return
        if self._lingering:
            if not linger:
                t.close()
            return
        self._cancel_timer()
        if linger and t.can_write_eof():
            self._lingering = True
            try:
                t.write_eof()
            except OSError:  # the peer is already gone
                t.close()
                return
            self._update_reading()
            self._arm("linger", LINGER_S, t.close)
        else:
            t.close()

    def begin_shutdown(self) -> None:
        """Idle connections close now; busy ones after the current response (Connection: close)."""
        self.closing = True
        if not self.busy and not self.queue:
            self.close()

    def abort(self) -> None:
        if self.transport is not None and not self.handed_off:
            self.transport.abort()
        if self._task is not None and not self._task.done():
            self._task.cancel()
