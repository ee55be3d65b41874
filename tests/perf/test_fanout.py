"""The supervisor's management routes ask every worker over its Unix socket (obscura/api/fanout.py).

A real node serves as worker 0 (its management routes on a Unix socket, as under `serve
--workers`); the faults are injected: a worker whose socket is gone and one that accepts and
never answers.
"""

from __future__ import annotations

import asyncio
import os

import httpx

from obscura.api.fanout import add_fanout_routes
from obscura.app import App
from obscura.http.router import Router
from obscura.http.server import HttpServer
from obscura.telemetry import Telemetry, TelemetryConfig


async def _supervisor_port(settings, paths) -> HttpServer:
    router = Router()
    add_fanout_routes(router, paths, readyz_timeout_s=3.0, metrics=True)
    server = HttpServer(router, settings=settings, access_log=False)
    await server.start("127.0.0.1", 0)
    return server


async def _probe(client: httpx.AsyncClient, supervisor: HttpServer) -> tuple[int, httpx.Response, list[str]]:
    """/livez status, /readyz response and /metrics lines of a supervisor's port."""
    base = f"http://127.0.0.1:{supervisor.port}"
    livez = (await client.get(f"{base}/livez")).status_code
    ready = await client.get(f"{base}/readyz")
    return livez, ready, (await client.get(f"{base}/metrics")).text.splitlines()


async def test_fanout_answers_for_every_worker_and_names_the_missing_one(settings_factory, tmp_path):
    settings = settings_factory()
    live, gone = str(tmp_path / "worker-0.sock"), str(tmp_path / "worker-1.sock")
    node = App(settings, telemetry=Telemetry(TelemetryConfig(prometheus=True)), mgmt_path=live)
    await node.start()
    supervisor = await _supervisor_port(settings, [live])
    broken = await _supervisor_port(settings, [live, gone])
    try:
        assert node.mgmt_port is None and os.path.exists(live)
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(3):
                assert (await client.get(f"http://127.0.0.1:{node.port}/openapi.yaml")).status_code == 200
            livez, ready, lines = await _probe(client, supervisor)
            assert livez == 200
            assert ready.status_code == 200
            assert ready.json() == {"status": "ok", "database": "ok", "storage": "ok", "pubsub": "ok"}
            assert 'obscura_worker_up{worker="0"} 1' in lines
            assert 'http_server_requests_total{worker="0",method="GET",route="/openapi.yaml",status="200"} 3' in lines

            # Worker 1 is not there: not live, not ready (its components are not blamed), its
            # series are missing and obscura_worker_up says so; worker 0 is still reported.
            livez, ready, lines = await _probe(client, broken)
            assert livez == 503
            assert ready.status_code == 503
            assert ready.json() == {"status": "error", "database": "ok", "storage": "ok", "pubsub": "ok"}
            assert 'obscura_worker_up{worker="0"} 1' in lines and 'obscura_worker_up{worker="1"} 0' in lines
            assert not any('worker="1"' in line for line in lines if not line.startswith("obscura_worker_up"))
    finally:
        await broken.shutdown(1.0)
        await supervisor.shutdown(1.0)
        await node.stop()


async def test_a_worker_that_never_answers_is_not_live_and_the_probe_still_returns(settings_factory, tmp_path):
    hung = str(tmp_path / "hung.sock")
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader, writer) -> None:
        accepted.append(writer)  # reads nothing, writes nothing

    silent = await asyncio.start_unix_server(never_answer, hung)
    supervisor = await _supervisor_port(settings_factory(), [hung])
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            res = await client.get(f"http://127.0.0.1:{supervisor.port}/livez")
            assert res.status_code == 503
            assert loop.time() - started < 5  # bounded by the livez timeout (2 s), not the client's
            assert accepted
            # The supervisor's port is still healthy afterwards.
            assert (await client.get(f"http://127.0.0.1:{supervisor.port}/readyz", timeout=10)).status_code == 503
    finally:
        await supervisor.shutdown(1.0)
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
