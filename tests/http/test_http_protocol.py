"""The HTTP/1.1 protocol over real sockets: pipelining, keep-alive, bodies, HEAD, request ids, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid

import httpx
import pytest

from obscura import errors
from obscura.http import Response, Router, StreamResponse, json_response
from obscura.http.request import request_id_from
from tests.http.support import UUID4_RE, RawConn


async def echo(request):  # noqa: ANN001
    body = await request.read()
    return json_response({"method": request.method, "path": request.path, "params": request.path_params,
                          "query": request.query, "len": len(body), "body": body.decode("latin-1"),
                          "route": request.route, "name": request.route_name})


async def slow_then_fast(request):  # noqa: ANN001
    await asyncio.sleep(float(request.query["d"][0]))
    return Response(200, request.query["n"][0].encode(), content_type="text/plain")


def app_router() -> Router:
    r = Router()
    r.add("GET", "/echo/{name}", echo, name="echo-get")
    r.add("POST", "/echo", echo, name="echo-post")
    r.add("GET", "/sleep", slow_then_fast)
    return r


async def test_pipelined_requests_are_answered_in_order(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    # The first request is the slowest: responses must still come back in request order.
    await conn.send(b"GET /sleep?d=0.2&n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"GET /sleep?d=0&n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                    b"GET /sleep?d=0.05&n=4 HTTP/1.1\r\nHost: t\r\n\r\n")
    bodies = [(await conn.response()).body for _ in range(4)]
    assert bodies[0] == b"1" and bodies[1] == b"2" and bodies[3] == b"4"
    assert b'"body":"abc"' in bodies[2]
    assert server.connections == 1
    conn.close()


async def test_keep_alive_connection_is_reused(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    for i in range(3):
        await conn.send(f"GET /echo/n{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = await conn.response()
        assert resp.status == 200 and resp.json()["params"] == {"name": f"n{i}"}
        assert resp.header("connection") is None  # HTTP/1.1 default: stays open
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        for _ in range(3):
            assert (await client.get("/echo/x")).status_code == 200
        assert server.connections == 2  # the raw one and httpx's single pooled one
    conn.close()


async def test_http10_closes_unless_keep_alive(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /echo/a HTTP/1.0\r\n\r\n")
    resp = await conn.response()
    assert resp.status == 200 and resp.header("connection") == "close"
    assert await conn.closed_by_server()


async def test_content_length_body(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.post("/echo?a=1&a=2&b=", content=b"x" * 100_000)
    assert resp.status_code == 200
    data = resp.json()
    assert data["len"] == 100_000 and data["query"] == {"a": ["1", "2"], "b": [""]}
    assert data["route"] == "/echo" and data["name"] == "echo-post"


async def test_chunked_request_body(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n")
    resp = await conn.response()
    assert resp.status == 200 and resp.json()["body"] == "hello world"

    async def gen():
        for part in (b"ab", b"cd", b"ef"):
            yield part

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp2 = await client.post("/echo", content=gen())
    assert resp2.json()["body"] == "abcdef"
    conn.close()


async def test_expect_100_continue(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await conn.response()
    assert interim.status == 100
    await conn.send(b"data")
    resp = await conn.response()
    assert resp.status == 200 and resp.json()["body"] == "data"
    conn.close()


async def test_head_has_get_headers_and_no_body(serve) -> None:  # noqa: ANN001
    async def doc(request):  # noqa: ANN001
        return json_response({"some": "document", "n": 12345})

    r = app_router()
    r.add("GET", "/doc", doc)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /doc HTTP/1.1\r\nHost: t\r\n\r\n")
    get = await conn.response()
    await conn.send(b"HEAD /doc HTTP/1.1\r\nHost: t\r\n\r\nGET /echo/y HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await conn.response(head=True)
    assert head.status == 200
    assert head.header("content-length") == get.header("content-length") != "0"
    assert head.header("content-type") == "application/json"
    after = await conn.response()  # the next response starts right where HEAD's headers ended
    assert after.status == 200 and after.json()["params"] == {"name": "y"}
    conn.close()


async def test_request_id_echoed_generated_and_sanitised(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        echoed = await client.get("/echo/a", headers={"X-Request-ID": "client-id-123"})
        fresh = await client.get("/echo/a")
        too_long = await client.get("/echo/a", headers={"X-Request-ID": "x" * 1000})
        missing = await client.get("/nowhere")
    assert echoed.headers["x-request-id"] == "client-id-123"
    assert re.match(UUID4_RE, fresh.headers["x-request-id"])
    assert re.match(UUID4_RE, too_long.headers["x-request-id"])
    assert re.match(UUID4_RE, missing.headers["x-request-id"])  # errors carry it too
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /echo/a HTTP/1.1\r\nX-Request-ID: bad\x01id\r\n\r\n")
    assert re.match(UUID4_RE, (await conn.response()).header("x-request-id"))
    conn.close()


def test_generated_request_ids_are_distinct_uuid4s() -> None:
    ids = [request_id_from(None) for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for rid in ids[:500]:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every variant nibble 8-b and every hex digit of the random part turn up
    assert {rid[19] for rid in ids} == set("89ab")
    assert set("".join(rid[:8] for rid in ids)) == set("0123456789abcdef")


def test_a_forked_child_does_not_repeat_its_parents_request_ids() -> None:
    # The random part is read from the OS in blocks; a child must not hand out the rest of the block.
    request_id_from(None)  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(request_id_from(None) for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {request_id_from(None) for _ in range(20)}
    assert len(child) == 20 and not child & parent


async def test_404_and_405_are_json_with_allow(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        not_found = await client.get("/nope")
        not_allowed = await client.delete("/echo/x")
    assert not_found.status_code == 404 and not_found.json() == {"error": "Not found"}
    assert not_found.headers["content-type"] == "application/json"
    assert not_allowed.status_code == 405 and not_allowed.json() == {"error": "Method not allowed"}
    assert not_allowed.headers["allow"] == "GET, HEAD"


async def test_handler_errors_render_as_json(serve) -> None:  # noqa: ANN001
    async def teapot(request):  # noqa: ANN001
        raise errors.TooManyRequests("Slow down", headers=[("Retry-After", "3")])

    r = Router()
    r.add("GET", "/limited", teapot)
    server = await serve(r)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.get("/limited")
    assert resp.status_code == 429 and resp.json() == {"error": "Slow down"}
    assert resp.headers["retry-after"] == "3" and resp.headers["content-type"] == "application/json"


async def test_500_hides_the_exception_and_logs_it(serve, caplog) -> None:  # noqa: ANN001
    async def boom(request):  # noqa: ANN001
        raise RuntimeError("secret database password in message")

    async def not_a_response(request):  # noqa: ANN001
        return {"oops": 1}

    r = Router()
    r.add("GET", "/boom", boom)
    r.add("GET", "/weird", not_a_response)
    server = await serve(r)
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        resp = await client.get("/boom", headers={"X-Request-ID": "rid-500"})
        weird = await client.get("/weird")
    assert resp.status_code == 500 and resp.json() == {"error": "Internal server error"}
    assert b"secret" not in resp.content
    assert weird.status_code == 500 and weird.json() == {"error": "Internal server error"}
    crash = [r for r in caplog.records if r.name == "obscura.http" and r.levelno == logging.ERROR]
    assert crash and "rid-500" in crash[0].getMessage() and crash[0].exc_info is not None


async def test_empty_response_has_no_content_type(serve) -> None:  # noqa: ANN001
    async def empty(request):  # noqa: ANN001
        return Response(200)

    async def no_content(request):  # noqa: ANN001
        return Response(204, headers=[("X-Extra", "1"), ("Content-Length", "99")])

    r = Router()
    r.add("DELETE", "/thing", empty)
    r.add("PUT", "/thing", no_content)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"DELETE /thing HTTP/1.1\r\n\r\nPUT /thing HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    first, second = await conn.response(), await conn.response()
    assert first.status == 200 and first.body == b"" and first.header("content-type") is None
    assert first.header("content-length") == "0"
    assert second.status == 204 and second.header("content-length") is None  # handler's copy dropped
    assert second.header("x-extra") == "1"
    conn.close()


async def test_stream_response_chunked_and_sized(serve) -> None:  # noqa: ANN001
    async def parts():
        for i in range(5):
            yield f"part{i};".encode()

    async def chunked(request):  # noqa: ANN001
        return StreamResponse(200, parts(), content_type="text/plain")

    async def sized(request):  # noqa: ANN001
        return StreamResponse(200, parts(), content_length=30, content_type="text/plain")

    r = Router()
    r.add("GET", "/chunked", chunked)
    r.add("GET", "/sized", sized)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /chunked HTTP/1.1\r\n\r\nGET /sized HTTP/1.1\r\n\r\nHEAD /sized HTTP/1.1\r\n\r\n")
    a, b = await conn.response(), await conn.response()
    head = await conn.response(head=True)
    assert a.header("transfer-encoding") == "chunked" and a.body == b"part0;part1;part2;part3;part4;"
    assert b.header("content-length") == "30" and b.body == a.body
    assert head.header("content-length") == "30"
    conn.close()


async def test_access_log_has_no_ip_query_or_headers(serve, caplog) -> None:  # noqa: ANN001
    server = await serve(app_router())
    caplog.set_level(logging.INFO, logger="obscura.access")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        await client.get("/echo/abc?ticket=sekrit", headers={"X-Request-ID": "rid-log", "X-Secret": "hdr"})
        await client.get("/missing")
    lines = [r.getMessage() for r in caplog.records if r.name == "obscura.access"]
    assert len(lines) == 2
    assert lines[0].startswith("GET /echo/{name} 200 ") and lines[0].endswith(" rid-log")
    assert lines[1].startswith("GET unmatched 404 ")
    for line in lines:
        assert "127.0.0.1" not in line and "sekrit" not in line and "hdr" not in line


@pytest.mark.parametrize(("line", "status"), [
    (b"GET /echo/%zz HTTP/1.1", 200),  # an undecodable escape stays as it is
    (b"GET /echo/%C3%A9t%C3%A9 HTTP/1.1", 200),
    (b"OPTIONS * HTTP/1.1", 404),
    (b"GET /echo/a/../b HTTP/1.1", 404),
    (b"CONNECT example.test:443 HTTP/1.1", 400),
], ids=["bad-escape", "utf8", "asterisk", "dots", "connect"])
async def test_odd_targets_get_clean_answers(serve, line: bytes, status: int) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    await conn.send(line + b"\r\nHost: t\r\n\r\n")
    resp = await conn.response()
    assert resp.status == status
    if status != 200:
        assert set(resp.json()) == {"error"}
    conn.close()


async def test_absolute_form_target_keeps_path_and_query(serve) -> None:  # noqa: ANN001
    server = await serve(app_router())
    conn = await RawConn.open(server.port)
    await conn.send(b"GET http://example.test/echo/abs?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
    data = (await conn.response()).json()
    assert data["params"] == {"name": "abs"} and data["query"] == {"x": ["1"]}
    conn.close()


async def test_duplicate_headers_are_preserved_and_case_insensitive(serve) -> None:  # noqa: ANN001
    async def show(request):  # noqa: ANN001
        return json_response({"all": request.headers.getall("X-Multi"), "one": request.headers.get("x-MULTI"),
                              "has": "X-Multi" in request.headers, "missing": request.headers.get("nope", "d"),
                              "names": [name for name, _ in request.headers]})

    r = Router()
    r.add("GET", "/show", show)
    server = await serve(r)
    conn = await RawConn.open(server.port)
    await conn.send(b"GET /show HTTP/1.1\r\nHost: t\r\nX-Multi: a\r\nx-multi: b, c\r\n\r\n")
    data = (await conn.response()).json()
    assert data == {"all": ["a", "b, c"], "one": "a", "has": True, "missing": "d",
                    "names": ["host", "x-multi", "x-multi"]}
    conn.close()
