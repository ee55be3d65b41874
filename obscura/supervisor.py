"""`obscura serve --workers N`: N event-loop processes sharing the ports (SO_REUSEPORT) under one parent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing as mp
import signal
import time

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


def _child(settings: Settings) -> None:
    from obscura.app import run
    from obscura.logs import configure_logging

    configure_logging(settings.telemetry_log_format, settings.telemetry_log_level)
    raise SystemExit(run(settings, reuse_port=True))


def run_workers(settings: Settings) -> int:
    """Start the workers, forward SIGTERM/SIGINT to them, exit 0 when all of them exited cleanly.

    The embedded PostgreSQL (no OBSCURA_DATABASE_URL) is started once here and shared by the
    workers. If one worker dies on its own, the others are stopped too and the exit status is 1:
    a process manager restarts the whole node.
    """
    check_workers(settings)
    embedded = None
    if settings.db_url is None:
        from obscura.store.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.data_dir)
        settings = dataclasses.replace(settings, db_url=asyncio.run(embedded.start()))
    stopping = False

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each worker drains like a single node (spec §1.3)

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(settings,), name=f"obscura-worker-{i}", daemon=False)
             for i in range(settings.server_workers)]
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        log.info("started %d workers on port %s", len(procs), settings.server_port)
        while any(p.is_alive() for p in procs):
            if not stopping and any(p.exitcode is not None for p in procs):
                log.error("a worker exited unexpectedly: stopping the others")
                stopping = True
                for p in procs:
                    if p.is_alive():
                        p.terminate()
            time.sleep(_POLL_S)
        codes = [p.exitcode for p in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            if p.is_alive():
                p.kill()
        if embedded is not None:
            asyncio.run(embedded.stop())
    clean = stopping and all(code == 0 for code in codes)
    log.info("workers exited with %s", codes)
    return 0 if clean else 1
