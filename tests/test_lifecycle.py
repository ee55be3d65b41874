"""A real `obscura serve` process: embedded mode from nothing, data across restarts, clean signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from obscura.store.embedded import EmbeddedPostgres
from obscura.store.migrate import load_migrations


def _postgres_pids(data_dir: str) -> list[int]:
    """PIDs of postgres processes whose command line mentions ``data_dir``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmd and data_dir in cmd:
            pids.append(int(entry))
    return pids


def _wait_gone(data_dir: str, timeout_s: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = _postgres_pids(data_dir)
        if not left:
            return []
        time.sleep(0.1)
    return _postgres_pids(data_dir)


async def _count_rows(data_dir: str, sql: str) -> int:
    """Attach to the node's embedded PostgreSQL (it joins the running server) and count."""
    pg = EmbeddedPostgres(data_dir)
    dsn = await pg.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()
    finally:
        await pg.stop()


def test_embedded_node_from_nothing_survives_restart_and_exits_cleanly(tmp_path, server_process):
    data_dir = str(tmp_path / "data")
    env = {"OBSCURA_DATA_DIR": data_dir, "OBSCURA_SERVER_SHUTDOWN_TIMEOUT_SECS": "5"}

    first = server_process(env)
    first.wait_ready(timeout_s=60)
    ready = httpx.get(f"http://127.0.0.1:{first.mgmt_port}/readyz").json()
    assert ready == {"status": "ok", "database": "ok", "storage": "ok", "pubsub": "ok"}
    # Write data while the node runs, through the same embedded server (a second user joins it).
    async def write() -> None:
        pg = EmbeddedPostgres(data_dir)
        conn = await asyncpg.connect(await pg.start())
        try:
            await conn.execute("INSERT INTO users (id, username, password_hash) VALUES "
                               "('0190f3c2-0000-7000-8000-000000000001', 'persisted_user', 'x')")
        finally:
            await conn.close()
            await pg.stop()
    asyncio.run(write())
    assert first.terminate() == 0, first.output()
    assert not _wait_gone(data_dir), "embedded PostgreSQL still running after SIGTERM"
    assert "applied migrations" in first.output()

    second = server_process(env)
    second.wait_ready(timeout_s=60)
    assert asyncio.run(_count_rows(data_dir, "SELECT count(*) FROM users WHERE username = 'persisted_user'")) == 1
    assert second.terminate() == 0, second.output()
    assert "applied migrations" not in second.output()
    assert not _wait_gone(data_dir)


def test_sigint_also_shuts_down_cleanly(tmp_path, server_process, database_url):
    proc = server_process({"OBSCURA_DATABASE_URL": database_url, "OBSCURA_DATA_DIR": str(tmp_path / "d"),
                           "OBSCURA_TELEMETRY_LOG_FORMAT": "json"})
    proc.wait_ready(timeout_s=60)
    assert httpx.get(proc.url + "/openapi.yaml").status_code == 200
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(30) == 0, proc.output()
    # JSON log format: every line is one object with the documented keys.
    import json
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def test_sigterm_lets_in_flight_request_finish(tmp_path, server_process, database_url):
    """A request whose headers arrived before SIGTERM still gets its response; new connections are refused."""
    import socket
    proc = server_process({"OBSCURA_DATABASE_URL": database_url, "OBSCURA_DATA_DIR": str(tmp_path / "d")})
    proc.wait_ready(timeout_s=60)
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    # A keep-alive connection with a request under way: headers sent, body still coming.
    sock.sendall(b"POST /openapi.yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    time.sleep(0.3)
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    sock.sendall(b"cde")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 405"), data[:200]
    assert proc.proc.wait(30) == 0, proc.output()


def test_migrate_command_applies_then_reports_nothing(database_url_fresh):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSCURA_")}
    env["OBSCURA_DATABASE_URL"] = database_url_fresh
    first = subprocess.run([sys.executable, "-m", "obscura", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"applied {len(load_migrations())} migration(s)" in first.stdout
    second = subprocess.run([sys.executable, "-m", "obscura", "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and "applied 0 migration(s)" in second.stdout


@pytest.fixture
def database_url_fresh(pg_server_dsn):
    """An empty, unmigrated database."""
    from tests.fixtures.postgres import create_database, drop_database
    from obscura.store.postgres.pool import with_database
    name = asyncio.run(create_database(pg_server_dsn))
    yield with_database(pg_server_dsn, name)
    asyncio.run(drop_database(pg_server_dsn, name))
