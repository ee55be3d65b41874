"""Server lifecycle and cross-cutting layers: hooks, route and global timeouts, graceful shutdown."""

from __future__ import annotations

import asyncio
import socket

import httpx

from obscura import errors
from obscura.http import HttpServer, Response, Router, error_response, json_response
from tests.http.support import RawConn, make_settings



def hanging(cancelled: asyncio.Event, started: asyncio.Event | None = None):  # noqa: ANN201
    """A handler that never finishes by itself and records when it starts and is cancelled."""
    async def handler(request):  # noqa: ANN001
        if started is not None:
            started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response()
    return handler

async def test_port_zero_binds_a_free_port_and_reuse_port_works() -> None:
    settings = make_settings()
    first = HttpServer(Router(), settings=settings)
    port = await first.start("127.0.0.1", 0, reuse_port=True)
    second = HttpServer(Router(), settings=settings)
    try:
        assert port > 0 and port == first.port
        assert await second.start("127.0.0.1", port, reuse_port=True) == port  # SO_REUSEPORT pair
    finally:
        await second.shutdown(1)
        await first.shutdown(1)


async def test_hooks_run_in_order_and_can_short_circuit(serve) -> None:  # noqa: ANN001
    calls: list[str] = []

    async def tag(request):  # noqa: ANN001
        calls.append(f"tag:{request.route_name}")
        request.state["user"] = "u1"
        return None

    async def gate(request):  # noqa: ANN001
        calls.append("gate")
        if request.endpoint.meta.get("tier") == "closed":
            return error_response(errors.TooManyRequests(headers=[("Retry-After", "1")]))
        return None

    async def handler(request):  # noqa: ANN001
        calls.append("handler")
        return json_response({"user": request.state["user"]})

    r = Router()
    r.add("GET", "/open", handler, name="open")
    r.add("GET", "/closed", handler, name="closed", meta={"tier": "closed"})
    server = await serve(r, hooks=(tag, gate))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        ok = await client.get("/open")
        limited = await client.get("/closed")
        missing = await client.get("/missing")
    assert ok.json() == {"user": "u1"}
    assert limited.status_code == 429 and limited.json() == {"error": "Too many requests"}
    assert limited.headers["retry-after"] == "1" and "x-request-id" in limited.headers
    assert missing.status_code == 404
    assert calls == ["tag:open", "gate", "handler", "tag:closed", "gate"]  # no hooks for a 404


async def test_handler_is_cancelled_on_route_timeout(serve) -> None:  # noqa: ANN001
    cancelled = asyncio.Event()

    async def fast(request):  # noqa: ANN001
        return Response(200, b"fast")

    r = Router()
    r.add("GET", "/slow", hanging(cancelled), timeout_s=0.2)
    r.add("GET", "/fast", fast)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /slow HTTP/1.1\r\n\r\nGET /fast HTTP/1.1\r\n\r\n")
    resp = await conn.response()
    assert resp.status == 408 and resp.json() == {"error": "Request timeout"}
    assert cancelled.is_set()
    assert (await conn.response()).body == b"fast"  # the connection is still usable
    conn.close()


async def test_a_timed_out_request_leaves_the_next_one_alone(serve) -> None:  # noqa: ANN001
    # One loop timer serves every deadline of a connection: the expired request's must not reach
    # the next request on the same connection, which runs longer than the first one's timeout.
    async def slow(request):  # noqa: ANN001
        await asyncio.sleep(30)
        return Response()

    async def medium(request):  # noqa: ANN001
        await asyncio.sleep(0.6)
        return Response(200, b"medium")

    r = Router()
    r.add("GET", "/slow", slow, timeout_s=0.2)
    r.add("GET", "/medium", medium, timeout_s=1)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    for _ in range(2):
        await conn.send(b"GET /slow HTTP/1.1\r\n\r\n")
        assert (await conn.response()).status == 408
        await conn.send(b"GET /medium HTTP/1.1\r\n\r\n")
        resp = await conn.response()
        assert resp.status == 200 and resp.body == b"medium"
    await asyncio.sleep(0.5)  # idle past the last request's timeout: nothing fires for it
    await conn.send(b"GET /medium HTTP/1.1\r\n\r\n")
    assert (await conn.response()).body == b"medium"
    conn.close()


async def _hanging_request(serve, timeout_s: float):  # noqa: ANN001, ANN202
    """A server whose /slow never finishes by itself, and a connection whose request is running."""
    started, cancelled = asyncio.Event(), asyncio.Event()
    r = Router()
    r.add("GET", "/slow", hanging(cancelled, started), timeout_s=timeout_s)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /slow HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(started.wait(), 2)
    return server, conn, cancelled


async def test_the_route_timeout_still_cancels_after_the_client_left(serve) -> None:  # noqa: ANN001
    server, conn, cancelled = await _hanging_request(serve, 0.3)
    conn.reset()  # the connection is gone; the handler must not run on unbounded
    await asyncio.sleep(0.1)
    assert server.connections == 0 and not cancelled.is_set()
    await asyncio.wait_for(cancelled.wait(), 3)


async def test_shutdown_cancels_a_request_inside_its_deadline(serve) -> None:  # noqa: ANN001
    # A cancellation that is not the deadline's (here: shutdown giving up on the handler) is
    # never turned into a 408 and the connection is not served further.
    server, conn, cancelled = await _hanging_request(serve, 20)
    await server.shutdown(0.2)
    assert b"408" not in await conn.read_to_eof(timeout=3)
    assert cancelled.is_set()


async def test_global_timeout_caps_a_long_route_timeout(serve) -> None:  # noqa: ANN001
    async def slow(request):  # noqa: ANN001
        await asyncio.sleep(30)
        return Response()

    r = Router()
    r.add("GET", "/slow", slow, timeout_s=60)
    server = await serve(r, server_global_timeout_secs=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.get("/slow")
    assert resp.status_code == 408 and resp.json() == {"error": "Request timeout"}
    assert loop.time() - started < 5


async def test_a_handlers_own_timeout_error_is_a_500(serve) -> None:  # noqa: ANN001
    async def flaky(request):  # noqa: ANN001
        raise TimeoutError("database did not answer")

    r = Router()
    r.add("GET", "/flaky", flaky)
    server = await serve(r)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.get("/flaky")
    assert resp.status_code == 500 and resp.json() == {"error": "Internal server error"}


async def test_graceful_shutdown_finishes_in_flight_request(serve) -> None:  # noqa: ANN001
    started = asyncio.Event()

    async def slow(request):  # noqa: ANN001
        started.set()
        await asyncio.sleep(0.5)
        return Response(200, b"done")

    async def fast(request):  # noqa: ANN001
        return Response(200, b"fast")

    r = Router()
    r.add("GET", "/slow", slow)
    r.add("GET", "/fast", fast)
    server = await serve(r)
    idle = await RawConn.open(server.port)
    await idle.send(b"GET /fast HTTP/1.1\r\n\r\n")
    assert (await idle.response()).status == 200
    busy = await RawConn.open(server.port)
    await busy.send(b"GET /slow HTTP/1.1\r\n\r\n")
    await started.wait()
    assert server.connections == 2

    shutdown = asyncio.create_task(server.shutdown(5))
    assert await idle.closed_by_server(timeout=1)  # idle keep-alive: closed at once
    resp = await busy.response()
    assert resp.status == 200 and resp.body == b"done" and resp.header("connection") == "close"
    assert await busy.closed_by_server()
    await asyncio.wait_for(shutdown, 5)
    assert server.connections == 0
    with socket.socket() as s:  # no longer accepting
        assert s.connect_ex(("127.0.0.1", server.port)) != 0


async def test_shutdown_force_closes_what_does_not_finish(serve) -> None:  # noqa: ANN001
    cancelled = asyncio.Event()
    r = Router()
    r.add("GET", "/stuck", hanging(cancelled))
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /stuck HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await server.shutdown(0.3)
    assert loop.time() - began < 3
    assert cancelled.is_set() and server.connections == 0
    assert await conn.closed_by_server(timeout=2)


async def test_client_half_close_still_gets_its_answer(serve) -> None:  # noqa: ANN001
    async def hello(request):  # noqa: ANN001
        await asyncio.sleep(0.05)
        return Response(200, b"hi")

    r = Router()
    r.add("GET", "/hello", hello)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /hello HTTP/1.1\r\n\r\n")
    conn.writer.write_eof()
    assert (await conn.response()).body == b"hi"
    assert await conn.closed_by_server()


async def test_client_disconnect_mid_body_does_not_log_a_crash(serve, caplog) -> None:  # noqa: ANN001
    done = asyncio.Event()
    seen: dict[str, object] = {}

    async def upload(request):  # noqa: ANN001
        try:
            await request.read()
        except errors.ObscuraError as exc:
            seen["error"] = type(exc).__name__
            raise
        finally:
            done.set()
        return Response()

    r = Router()
    r.add("POST", "/upload", upload)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\nonly-a-little")
    await asyncio.sleep(0.05)
    conn.writer.transport.abort()
    await asyncio.wait_for(done.wait(), 5)
    assert seen["error"] == "ClientDisconnected"
    await asyncio.sleep(0.05)
    assert server.connections == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
