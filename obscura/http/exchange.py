"""Serving one request: hooks, handler, timeouts, error rendering, response writing, access log."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from obscura import errors
from obscura.http.request import ClientDisconnected, Request, request_id_from
from obscura.logs import request_id_var
from obscura.http.response import Response, StreamResponse, body_allowed, encode_head, error_response

if TYPE_CHECKING:
    from obscura.http.gateway import ListenerFactory
    from obscura.http.protocol import HttpConnection

__all__ = ["serve_one"]

_GATEWAY, _FAILURE = 1, 2
_SMALL_BODY_BYTES = 16 * 1024  # below this, head and body go out in one buffer


class _Upgrade:
    __slots__ = ("factory",)

    def __init__(self, factory: ListenerFactory) -> None:
        self.factory = factory


async def serve_one(conn: HttpConnection, req: Request | None, err: errors.ObscuraError | None,
                    kind: int) -> bool:
    """Answer one queued item; True when the connection may serve the next request."""
    server = conn.server
    start = time.perf_counter()  # for the access log; deadlines use the loop's clock
    if req is None or kind == _FAILURE:  # unusable bytes: say why, then close (spec §2.1, decisions §4.1)
        resp, rid = error_response(err or errors.BadRequest()), request_id_from(None)
        status = write_response(conn, None, resp, rid, False)
        server.log_access("-", None, status, start, rid)
        return False
    obs = server.observer
    if obs is None:
        # Log lines written while serving carry the request id (the observer sets it otherwise).
        token = request_id_var.set(req.request_id)
        try:
            return (await _serve(conn, req, err, kind, start))[0]
        finally:
            request_id_var.reset(token)
    state, status = obs.on_request_start(req), 500
    try:
        keep, status = await _serve(conn, req, err, kind, start)
        return keep
    finally:
        obs.on_request_end(req, state, status)


async def _serve(conn: HttpConnection, req: Request, err: errors.ObscuraError | None, kind: int,
                 start: float) -> tuple[bool, int]:
    """Answer one parsed request; (keep the connection, status sent)."""
    server = conn.server
    s = server.settings
    route = req.endpoint
    timeout_s = s.server_request_timeout_secs if route is None or route.timeout_s is None else route.timeout_s
    now = conn.loop.time()
    global_deadline = now + s.server_global_timeout_secs
    resp = await _produce(conn, req, err, kind, min(now + timeout_s, global_deadline))
    if isinstance(resp, _Upgrade):
        return False, _hand_off(conn, req, resp, start)
    body = req._body
    keep = (req.keep_alive and not conn.closing and not req.upgrade and not conn.lost
            and (body is None or body.complete))
    if isinstance(resp, StreamResponse):
        keep, status = await _write_stream(conn, req, resp, keep, global_deadline)
    else:
        status = write_response(conn, req, resp, req.request_id, keep)
    if body is not None:
        body.discard()
    server.log_access(req.method, req.route, status, start, req.request_id)
    return keep, status


async def _produce(conn: HttpConnection, req: Request, err: errors.ObscuraError | None, kind: int,
                   deadline: float) -> Response | StreamResponse | _Upgrade:
    if err is not None:  # refused while parsing (not raised here: its traceback would hold this frame)
        return error_response(err)
    server = conn.server
    expired = False
    conn.begin_deadline(deadline)  # route timeout and global timeout, whichever comes first
    try:
        try:
            for hook in server.hooks:
                hooked = await hook(req)
                if hooked is not None:
                    return hooked
            if kind == _GATEWAY:
                server.gateway.validate(req)  # type: ignore[union-attr]
                return _Upgrade(await server.gateway.authorize(req))  # type: ignore[union-attr]
            resp = await req.endpoint.handler(req)  # type: ignore[union-attr,misc]
            if not isinstance(resp, (Response, StreamResponse)):
                raise TypeError(f"handler returned {type(resp).__name__}, not a Response")
            return resp
        finally:
            expired = conn.end_deadline()
    except asyncio.CancelledError:
        if not expired:
            raise
        return error_response(errors.RequestTimeout())
    except errors.ObscuraError as exc:
        return error_response(exc)
    except Exception:
        _log_crash(conn, req)
        return error_response(errors.InternalError())


def _log_crash(conn: HttpConnection, req: Request) -> None:
    # Traceback for operators; the client only ever sees {"error":"Internal server error"}.
    conn.server.logger.error("unhandled exception in %s %s request_id=%s", req.method,
                             req.route or "unmatched", req.request_id, exc_info=True)
    if conn.server.observer is not None:
        conn.server.observer.on_exception(req, sys.exc_info()[1])  # type: ignore[arg-type]


def write_response(conn: HttpConnection, req: Request | None, resp: Response, request_id: str,
                   keep: bool) -> int:
    """Write a whole response (no body for HEAD, 1xx, 204, 304); returns the status sent."""
    t = conn.transport
    if t is None or conn.lost or t.is_closing():
        return resp.status
    body = resp.body
    has_body = body_allowed(resp.status)
    try:
        head = encode_head(resp.status, resp.headers, resp.content_type, len(body) if has_body else None,
                           request_id, keep)
    except ValueError:
        if req is not None:
            _log_crash(conn, req)
        resp = error_response(errors.InternalError())
        body = resp.body
        head = encode_head(500, resp.headers, resp.content_type, len(body), request_id, keep)
    if not has_body or not body or (req is not None and req.method == "HEAD"):
        t.write(head)
    elif len(body) <= _SMALL_BODY_BYTES:
        t.write(head + body)
    else:
        t.writelines((head, body))
    return resp.status


async def _write_stream(conn: HttpConnection, req: Request, resp: StreamResponse, keep: bool,
                        deadline: float) -> tuple[bool, int]:
    """Stream a body with backpressure: wait for the transport to drain whenever it asks us to."""
    t = conn.transport
    known = resp.content_length
    chunked = known is None and req.http_version != "1.0"
    if known is None and not chunked:
        keep = False  # an HTTP/1.0 client learns where the body ends from the close
    send_body = body_allowed(resp.status) and req.method != "HEAD"
    try:
        head = encode_head(resp.status, resp.headers, resp.content_type, known, req.request_id, keep, chunked)
    except ValueError:
        _log_crash(conn, req)
        await _aclose(resp.chunks)
        return keep, write_response(conn, req, error_response(errors.InternalError()), req.request_id, keep)
    if t is None or conn.lost or t.is_closing():
        await _aclose(resp.chunks)
        return False, resp.status
    t.write(head)
    if not send_body:
        await _aclose(resp.chunks)
        return keep, resp.status
    sent = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in resp.chunks:
                if not chunk:
                    continue
                if conn.lost or t.is_closing():
                    raise ClientDisconnected()
                if known is not None and sent + len(chunk) > known:
                    raise ValueError("stream yielded more bytes than its Content-Length")
                if chunked:
                    t.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    t.write(chunk)
                sent += len(chunk)
                if conn.write_paused:
                    await conn.drain()
        if known is not None and sent != known:
            raise ValueError("stream yielded fewer bytes than its Content-Length")
        if chunked:
            t.write(b"0\r\n\r\n")
    except ClientDisconnected:
        keep = False
    except Exception:  # incl. the global timeout: headers are out, so the only signal left is the close
        _log_crash(conn, req)
        keep = False
        t.close()  # never a clean end: the client must see the body as truncated
    finally:
        await _aclose(resp.chunks)
    return keep, resp.status


async def _aclose(chunks: object) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - a broken generator must not break the connection loop
            pass


def _hand_off(conn: HttpConnection, req: Request, up: _Upgrade, start: float) -> int:
    """Build the session listener, then give the socket (and bytes already read) to picows."""
    server = conn.server
    try:
        listener = up.factory()
    except Exception:
        _log_crash(conn, req)
        status = write_response(conn, req, error_response(errors.InternalError()), req.request_id, False)
        server.log_access(req.method, req.route, status, start, req.request_id)
        return status
    t = conn.transport
    if t is None or conn.lost or t.is_closing():
        return 499  # the client left before the switch (nginx's "client closed request")
    conn.handed_off = True
    server._closed(conn)  # from now on the gateway owns this socket
    try:
        if server.observer is None:
            server.gateway.take_over(t, req, listener, bytes(conn.tail))  # type: ignore[union-attr]
        else:  # the session outlives the upgrade request: it must not run inside its span
            server.observer.outside_request(server.gateway.take_over, t, req, listener, bytes(conn.tail))
    except Exception:
        _log_crash(conn, req)
        t.abort()
        return 500
    finally:
        conn.tail.clear()
        conn.release_parser()
    server.log_access(req.method, req.route, 101, start, req.request_id)
    return 101
