"""Per-request cost of telemetry on the front door: disabled vs enabled (issue 7 §1: "nothing measurable").

Run: .venv/bin/pytest bench/bench_telemetry.py --benchmark-group-by=group --benchmark-columns=min,mean,median,ops
Each round is 200 sequential keep-alive requests to a trivial route over one socket, so the rows
compare the whole front door with and without the observer (RED metrics + one span per request).
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from obscura.config import load_settings
from obscura.http import HttpServer, Router
from obscura.http.response import Response
from obscura.telemetry import Telemetry, TelemetryConfig

REQUESTS_PER_ROUND = 200
REQUEST = b"GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n"


class _DropSpans(SpanExporter):
    def export(self, spans):  # noqa: ANN001
        return SpanExportResult.SUCCESS


def _telemetry(mode: str) -> Telemetry:
    if mode == "disabled":
        return Telemetry()
    ratio = 1.0 if mode == "enabled-sampled" else 0.0
    return Telemetry(TelemetryConfig(sampling_ratio=ratio, prometheus=True), span_exporters=[_DropSpans()])


async def _round(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(REQUESTS_PER_ROUND):
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)


@pytest.mark.benchmark(group="front door, 200 requests")
@pytest.mark.parametrize("mode", ["disabled", "enabled-unsampled", "enabled-sampled"])
def test_front_door_requests(benchmark, mode):
    loop = uvloop.new_event_loop()
    telemetry = _telemetry(mode)
    telemetry.start()

    async def ping(request) -> Response:
        return Response(200, b"pong", content_type="text/plain")

    router = Router()
    router.add("GET", "/ping", ping)
    server = HttpServer(router, settings=load_settings(environ={}, server_access_log=False),
                        observer=telemetry.http_observer())

    async def setup():
        port = await server.start("127.0.0.1", 0)
        return await asyncio.open_connection("127.0.0.1", port)

    reader, writer = loop.run_until_complete(setup())
    try:
        benchmark.pedantic(lambda: loop.run_until_complete(_round(reader, writer)), rounds=30, warmup_rounds=3)
    finally:
        writer.close()
        loop.run_until_complete(server.shutdown(1.0))
        loop.run_until_complete(telemetry.shutdown(5.0))
        loop.close()
    if mode != "disabled":
        assert telemetry.value("http_server_requests_total",
                               {"method": "GET", "route": "/ping", "status": "200"}) >= REQUESTS_PER_ROUND
