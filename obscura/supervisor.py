"""`obscura serve --workers N`: N event-loop processes sharing the ports (SO_REUSEPORT) under one parent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing as mp
import os
import shutil
import signal
import tempfile

from obscura.config import ConfigError, Settings

__all__ = ["check_workers", "run_workers"]

log = logging.getLogger("obscura.supervisor")

_POLL_S = 0.2


def check_workers(settings: Settings) -> None:
    """Workers share nothing in memory, so the bus, tickets and idempotency cache must be in Redis."""
    n = settings.server_workers
    if n <= 1:
        return
    if not settings.pubsub_url:
        raise ConfigError(
            f"OBSCURA_WORKERS={n} needs OBSCURA_PUBSUB_URL: worker processes coordinate through Redis; "
            "with in-process coordination (no Redis) only one worker is supported")
    if settings.server_port == 0 or settings.server_mgmt_port == 0:
        raise ConfigError(f"OBSCURA_WORKERS={n} needs fixed ports: OBSCURA_SERVER_PORT and "
                          "OBSCURA_SERVER_MGMT_PORT cannot be 0 (each worker would pick another port)")


def _child(settings: Settings, mgmt_path: str) -> None:
    from obscura.app import run
    from obscura.logs import configure_logging

    configure_logging(settings.telemetry_log_format, settings.telemetry_log_level)
    raise SystemExit(run(settings, reuse_port=True, mgmt_path=mgmt_path))


def run_workers(settings: Settings) -> int:
    """Start the workers, forward SIGTERM/SIGINT to them, exit 0 when all of them exited cleanly.

    The embedded PostgreSQL (no OBSCURA_DATABASE_URL) is started once here and shared by the
    workers. If one worker dies on its own, the others are stopped too and the exit status is 1:
    a process manager restarts the whole node. This process serves the management port: every
    worker's management routes listen on a private Unix socket, and /livez, /readyz and /metrics
    ask them all (obscura/api/fanout.py).
    """
    import uvloop

    check_workers(settings)
    return uvloop.run(_supervise(settings))


async def _supervise(settings: Settings) -> int:
    from obscura.api.fanout import add_fanout_routes
    from obscura.http.router import Router
    from obscura.http.server import HttpServer

    loop = asyncio.get_running_loop()
    embedded = None
    run_dir = tempfile.mkdtemp(prefix="obscura-workers-")  # 0700: only this user reaches the workers
    paths = [os.path.join(run_dir, f"worker-{i}.sock") for i in range(settings.server_workers)]
    ctx = mp.get_context("spawn")
    procs: list = []
    stopping = False

    def stop_all() -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each worker drains like a single node (spec §1.3)

    def on_signal() -> None:
        nonlocal stopping
        stopping = True
        stop_all()

    router = Router()
    add_fanout_routes(router, paths, metrics=settings.telemetry_prometheus_enabled, readyz_timeout_s=1.0 + max(
        settings.health_db_timeout_ms, settings.health_storage_timeout_ms, settings.health_pubsub_timeout_ms) / 1000)
    mgmt = HttpServer(router, settings=settings, access_log=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await mgmt.start(settings.server_host, settings.server_mgmt_port)  # fails fast when taken
        if settings.db_url is None:
            from obscura.store.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(settings.data_dir)
            settings = dataclasses.replace(settings, db_url=await embedded.start())
        procs.extend(ctx.Process(target=_child, args=(settings, path), name=f"obscura-worker-{i}", daemon=False)
                     for i, path in enumerate(paths))
        for p in procs:
            if not stopping:
                p.start()
        log.info("started %d workers on port %s (management %s:%s)", len(procs), settings.server_port,
                 settings.server_host, mgmt.port)
        while any(p.is_alive() for p in procs):
            if not stopping and any(p.exitcode is not None for p in procs):
                log.error("a worker exited unexpectedly: stopping the others")
                stopping = True
                stop_all()
            await asyncio.sleep(_POLL_S)
        codes = [p.exitcode for p in procs]
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for p in procs:
            if p.is_alive():
                p.kill()
        await mgmt.shutdown(1.0)
        if embedded is not None:
            await embedded.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    clean = stopping and all(code == 0 for code in codes)
    log.info("workers exited with %s", codes)
    return 0 if clean else 1
