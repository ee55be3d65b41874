"""Limits and hostile input: 400/408/411/413/431, smuggling attempts, flow control of big bodies."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from obscura.http import Response, Router, StreamResponse, json_response
from tests.http.support import RawConn


async def read_all(request):  # noqa: ANN001
    return json_response({"len": len(await request.read())})


async def needs_length(request):  # noqa: ANN001
    request.require_content_length()
    return json_response({"len": len(await request.read())})


def limits_router() -> Router:
    r = Router()
    r.add("POST", "/read", read_all)
    r.add("POST", "/length", needs_length)
    r.add("POST", "/stall", read_all, timeout_s=0.3)
    r.add("GET", "/ok", lambda request: _ok())
    return r


async def _ok() -> Response:
    return Response(200, b"ok", content_type="text/plain")


async def expect_error_then_close(conn: RawConn, status: int, message: str | None = None) -> None:
    resp = await conn.response()
    assert resp.status == status, resp
    assert resp.header("content-type") == "application/json"
    if message is not None:
        assert resp.json() == {"error": message}
    else:
        assert set(resp.json()) == {"error"}
    assert resp.header("connection") == "close"
    assert await conn.closed_by_server()


@pytest.mark.parametrize("data", [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /ok HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    b"POST /read HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /read HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /read HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /read HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
], ids=["garbage", "version", "header-name", "cl-and-te", "two-cl", "negative-cl", "te-not-chunked"])
async def test_malformed_requests_get_400_json_and_close(serve, data: bytes) -> None:  # noqa: ANN001
    server = await serve(limits_router())
    conn = await RawConn.open(server.port)
    await conn.send(data)
    await expect_error_then_close(conn, 400)


async def test_garbage_after_a_good_request_answers_the_good_one_first(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
    assert (await conn.response()).body == b"ok"
    await expect_error_then_close(conn, 400)


async def test_bad_chunk_mid_body_is_400(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /read HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    await expect_error_then_close(conn, 400, "Malformed HTTP request")


async def test_huge_header_is_431(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_max_header_bytes=4096)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    await expect_error_then_close(conn, 431, "Request header fields too large")


async def test_endless_header_line_is_431_before_it_ends(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_max_header_bytes=4096)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\nX-Big: ")
    for _ in range(10):  # the line never ends: the raw byte count must still trip the limit
        await conn.send(b"a" * 1000)
        await asyncio.sleep(0.01)
    await expect_error_then_close(conn, 431)


async def test_too_many_headers_is_431(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_max_headers=20)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(21)) + b"\r\n")
    await expect_error_then_close(conn, 431)
    ok = await RawConn.open(server.port)
    await ok.send(b"GET /ok HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(19)) + b"\r\n")
    assert (await ok.response()).status == 200
    ok.close()


async def test_declared_body_over_limit_is_413_before_it_is_sent(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_max_body_bytes=1024)
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /read HTTP/1.1\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
    await expect_error_then_close(conn, 413, "Payload too large")


async def test_chunked_body_over_limit_is_413_mid_stream(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_max_body_bytes=1024)
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /read HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        await conn.send(b"200\r\n" + b"z" * 512 + b"\r\n")
    await expect_error_then_close(conn, 413, "Payload too large")


async def test_413_reaches_a_client_that_keeps_sending(serve) -> None:  # noqa: ANN001
    # httpx writes the whole body before reading: the server must drain, not reset, after its 413.
    server = await serve(limits_router(), server_max_body_bytes=1024)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.post("/read", content=b"q" * 300_000)
    assert resp.status_code == 413 and resp.json() == {"error": "Payload too large"}


async def test_length_required_is_411(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /length HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    resp = await conn.response()
    assert resp.status == 411 and resp.json() == {"error": "Length required"}
    await conn.send(b"POST /length HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert (await conn.response()).json() == {"len": 3}  # the chunked body was complete: still usable
    conn.close()


async def test_stalled_body_hits_the_route_timeout(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /stall HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
    await expect_error_then_close(conn, 408, "Request timeout")


async def test_slow_headers_get_408(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_header_timeout_secs=1)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n")  # ... and never the blank line
    loop = asyncio.get_running_loop()
    started = loop.time()
    await expect_error_then_close(conn, 408, "Request timeout")
    assert 0.5 < loop.time() - started < 4


async def test_silent_connection_is_closed_after_header_timeout(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_header_timeout_secs=1)
    conn = await RawConn.open(server.port)
    assert await conn.read_to_eof(timeout=4) == b""  # nothing sent: closed without a response


async def test_idle_keep_alive_connection_is_closed(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_keepalive_timeout_secs=1)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /ok HTTP/1.1\r\n\r\n")
    assert (await conn.response()).status == 200
    assert server.connections == 1
    assert await conn.closed_by_server(timeout=4)
    await asyncio.sleep(0.05)
    assert server.connections == 0


async def test_busy_keep_alive_connection_outlives_its_idle_timeout(serve) -> None:  # noqa: ANN001
    # Each request moves the idle deadline; the loop timer is re-armed lazily, so it fires early,
    # finds the connection busy or recently used, and must not close it.
    server = await serve(limits_router(), server_keepalive_timeout_secs=1)
    conn = await RawConn.open(server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 2.6:
        await conn.send(b"GET /ok HTTP/1.1\r\n\r\n")
        assert (await conn.response()).status == 200
        await asyncio.sleep(0.4)
    assert server.connections == 1
    idle_from = loop.time()
    assert await conn.closed_by_server(timeout=4)
    assert 0.5 < loop.time() - idle_from < 3


async def test_slow_headers_on_a_reused_connection_get_408(serve) -> None:  # noqa: ANN001
    server = await serve(limits_router(), server_header_timeout_secs=1)
    conn = await RawConn.open(server.port)
    for _ in range(3):
        await conn.send(b"GET /ok HTTP/1.1\r\n\r\n")
        assert (await conn.response()).status == 200
        await asyncio.sleep(0.3)
    await conn.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n")  # ... and never the blank line
    loop = asyncio.get_running_loop()
    started = loop.time()
    await expect_error_then_close(conn, 408, "Request timeout")
    assert 0.5 < loop.time() - started < 4


async def test_streamed_upload_keeps_server_memory_bounded(serve) -> None:  # noqa: ANN001
    seen = {"total": 0, "peak": 0}

    async def upload(request):  # noqa: ANN001
        async for chunk in request.stream():
            seen["total"] += len(chunk)
            seen["peak"] = max(seen["peak"], request.buffered_bytes + len(chunk))
            seen["chunks"] = seen.get("chunks", 0) + 1
            await asyncio.sleep(0.004)  # a slow consumer (e.g. object storage)
        return json_response({"received": seen["total"]})

    r = Router()
    r.add("POST", "/upload", upload, stream_body=True)
    server = await serve(r)
    size = 8 * 1024 * 1024
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /upload HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"u" * (256 * 1024)
    for _ in range(size // len(block)):
        await conn.send(block)
    resp = await conn.response(timeout=30)
    assert resp.json() == {"received": size}
    # Flow control: never more than the high-water mark plus one socket read queued in the server.
    # Without flow control this slow consumer would let megabytes pile up in the queue.
    assert seen["peak"] < 1024 * 1024, seen
    conn.close()


async def test_large_download_respects_backpressure(serve) -> None:  # noqa: ANN001
    produced = {"bytes": 0}
    block = b"d" * (64 * 1024)
    total = 64 * 1024 * 1024

    async def blocks():
        while produced["bytes"] < total:
            produced["bytes"] += len(block)
            yield block

    async def download(request):  # noqa: ANN001
        return StreamResponse(200, blocks(), content_length=total, content_type="application/octet-stream")

    r = Router()
    r.add("GET", "/download", download)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /download HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.5)  # read nothing: the producer must stall on the transport
    assert produced["bytes"] < 24 * 1024 * 1024, produced
    resp = await conn.response(timeout=60)
    assert len(resp.body) == total and produced["bytes"] == total
    conn.close()
