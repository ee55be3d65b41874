"""Embedded PostgreSQL: starts, keeps data across restarts, is shared safely, and stops only what obscura started."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from obscura.store import pgbin
from obscura.store.embedded import EmbeddedPostgres, EmbeddedPostgresError

_CHILD = """
import asyncio, json, os, sys
import asyncpg
from obscura.store.embedded import EmbeddedPostgres

async def main():
    server = EmbeddedPostgres(sys.argv[1], durable=False)
    dsn = await server.start()
    conn = await asyncpg.connect(dsn)
    await conn.fetchval("SELECT 1")
    await conn.close()
    print(json.dumps({"pid": server.postmaster_pid, "started_here": server.started_here}), flush=True)
    if sys.argv[2] == "crash":
        os._exit(0)           # no stop(): the server outlives us, as after a crash
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()
    print("stopped", flush=True)

asyncio.run(main())
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # As root the server runs as another user, who must be able to enter the folder.
    base = Path(tempfile.mkdtemp(prefix="obscura-emb-"))
    os.chmod(base, 0o711)
    try:
        yield base / "data"
    finally:
        _stop_leftover(base / "data")
        shutil.rmtree(base, ignore_errors=True)


def _stop_leftover(data: Path) -> None:
    """Safety net so a failing test never leaks a server (every test asserts it did not)."""
    if (data / "postgres" / "postmaster.pid").exists():
        bins = pgbin.find_binaries(data / "postgres")
        pgbin.run_pg([bins.exe("pg_ctl"), "stop", "-D", str(data / "postgres"), "-m", "immediate", "-w"],
                     pgbin.resolve_run_as(data / "postgres"), 30, check=False)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_dead(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        assert time.monotonic() < deadline, f"postmaster {pid} still running"
        time.sleep(0.02)


async def _query(dsn: str, sql: str, *args):
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _child(data: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(data), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])


async def test_starts_on_a_socket_and_stops_cleanly(data_dir):
    server = EmbeddedPostgres(data_dir, durable=False)
    dsn = await server.start()
    pid = server.postmaster_pid
    try:
        assert server.started_here and _alive(pid)
        assert f"host={server.pgdata}" in dsn and dsn.startswith("postgresql://postgres@/obscura?")
        rows = await _query(dsn, "SELECT current_database() AS db, current_setting('listen_addresses') AS listen, "
                                 "current_setting('server_version_num')::int AS version")
        assert (rows[0]["db"], rows[0]["listen"]) == ("obscura", "")   # no TCP port at all
        assert rows[0]["version"] >= 140000
        assert (server.pgdata / ".s.PGSQL.5432").is_socket()
        assert oct((server.pgdata).stat().st_mode & 0o777) == "0o700"
        assert await server.start() == dsn   # idempotent
    finally:
        await server.stop()
    _wait_dead(pid)
    assert not (server.pgdata / "postmaster.pid").exists()
    assert server.dsn is None
    await server.stop()   # idempotent


async def test_data_persists_across_restarts(data_dir):
    server = EmbeddedPostgres(data_dir)
    dsn = await server.start()
    conn = await asyncpg.connect(dsn, timeout=30)
    await conn.execute("CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('hello')")
    await conn.close()
    first_pid = server.postmaster_pid
    await server.stop()
    _wait_dead(first_pid)

    again = EmbeddedPostgres(data_dir)
    dsn2 = await again.start()
    try:
        assert again.started_here and again.postmaster_pid != first_pid
        assert [r["v"] for r in await _query(dsn2, "SELECT v FROM kept")] == ["hello"]
    finally:
        pid = again.postmaster_pid
        await again.stop()
    _wait_dead(pid)


async def test_a_second_user_joins_and_the_last_one_stops_it(data_dir):
    first, second = EmbeddedPostgres(data_dir, durable=False), EmbeddedPostgres(data_dir, durable=False)
    await first.start()
    dsn = await second.start()
    pid = first.postmaster_pid
    assert first.started_here and not second.started_here and second.postmaster_pid == pid
    await first.stop()                       # second still uses it: it must keep running
    assert _alive(pid)
    assert (await _query(dsn, "SELECT 1 AS one"))[0]["one"] == 1
    await second.stop()                      # last user out stops the server obscura started
    _wait_dead(pid)


async def test_a_server_obscura_did_not_start_is_left_running(data_dir):
    server = EmbeddedPostgres(data_dir, durable=False)
    await server.start()
    pid = server.postmaster_pid
    await server.stop()
    _wait_dead(pid)
    # Someone starts the cluster by hand; obscura joins it and must not stop it on exit.
    bins = pgbin.find_binaries(server.pgdata)
    run_as = pgbin.resolve_run_as(server.pgdata)
    pgbin.run_pg([bins.exe("pg_ctl"), "start", "-D", str(server.pgdata), "-w", "-l", str(server.pgdata / "manual.log"),
                  "-o", f"-c listen_addresses='' -k {server.pgdata}"], run_as, 60)
    dsn = await server.start()
    foreign = server.postmaster_pid
    assert not server.started_here
    assert (await _query(dsn, "SELECT 1 AS one"))[0]["one"] == 1
    await server.stop()
    assert _alive(foreign)
    pgbin.run_pg([bins.exe("pg_ctl"), "stop", "-D", str(server.pgdata), "-m", "fast", "-w"], run_as, 60)
    _wait_dead(foreign)


async def test_a_server_left_by_a_crashed_node_is_adopted_and_stopped(data_dir):
    child = _child(data_dir, "crash")
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    pid = json.loads(out.splitlines()[0])["pid"]
    assert _alive(pid)                       # the crashed node never stopped it

    server = EmbeddedPostgres(data_dir, durable=False)
    await server.start()
    assert server.postmaster_pid == pid and not server.started_here
    await server.stop()                      # obscura started it (owner marker matches): stop it
    _wait_dead(pid)


async def test_two_processes_starting_at_once_share_one_server(data_dir):
    children = [_child(data_dir, "wait") for _ in range(2)]
    try:
        infos = [json.loads(await asyncio.to_thread(c.stdout.readline)) for c in children]
        assert infos[0]["pid"] == infos[1]["pid"] and _alive(infos[0]["pid"])
        assert sorted(i["started_here"] for i in infos) == [False, True]
        assert (data_dir / "postgres" / "PG_VERSION").is_file()
        for c in children:
            out, _ = await asyncio.to_thread(c.communicate, "", 120)
            assert c.returncode == 0 and out.strip() == "stopped"
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
    _wait_dead(infos[0]["pid"])


async def test_a_deep_data_dir_gets_a_short_socket_folder(data_dir):
    deep = data_dir / ("d" * 60) / ("e" * 60)
    server = EmbeddedPostgres(deep, durable=False)
    dsn = await server.start()
    pid = server.postmaster_pid
    try:
        assert "host=/tmp/obscura-pg-" in dsn
        socket_dir = Path(dsn.split("host=")[1].split("&")[0])
        assert oct(socket_dir.stat().st_mode & 0o777) == "0o700"
        assert (await _query(dsn, "SELECT 1 AS one"))[0]["one"] == 1
    finally:
        await server.stop()
    _wait_dead(pid)
    assert not socket_dir.exists()


async def test_falls_back_to_binaries_on_path(data_dir, monkeypatch):
    wheel_bin = pgbin.find_binaries(data_dir / "postgres").bin_dir
    monkeypatch.setattr(pgbin.importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(pgbin.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("PATH", f"{wheel_bin}:/usr/bin:/bin")
    assert pgbin.find_binaries(data_dir / "postgres").source == "PATH"
    server = EmbeddedPostgres(data_dir, durable=False)
    dsn = await server.start()
    pid = server.postmaster_pid
    try:
        assert (await _query(dsn, "SELECT 1 AS one"))[0]["one"] == 1
    finally:
        await server.stop()
    _wait_dead(pid)


async def test_no_binaries_at_all_is_a_clear_error(data_dir, monkeypatch):
    monkeypatch.setattr(pgbin.importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(pgbin.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedPostgresError, match="no PostgreSQL server binaries found.*OBSCURA_DATABASE_URL"):
        await EmbeddedPostgres(data_dir).start()


async def test_a_cluster_from_another_major_version_is_refused(data_dir):
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "PG_VERSION").write_text("9\n")
    with pytest.raises(EmbeddedPostgresError, match="created by PostgreSQL 9"):
        await EmbeddedPostgres(data_dir).start()


async def test_a_foreign_folder_is_not_overwritten(data_dir):
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "precious.txt").write_text("mine")
    with pytest.raises(EmbeddedPostgresError, match="not empty but holds no PostgreSQL cluster"):
        await EmbeddedPostgres(data_dir).start()
    assert (data_dir / "postgres" / "precious.txt").read_text() == "mine"


def test_root_runs_the_server_as_an_unprivileged_user(data_dir):
    run_as = pgbin.resolve_run_as(data_dir / "postgres")
    if os.geteuid() == 0:
        # Either a user namespace (an unprivileged id inside, root's files outside) or a system user.
        assert run_as is not None and (run_as.namespace or run_as.uid != 0)
    else:
        assert run_as is None


async def test_root_in_a_private_folder_needs_no_permission_changes(tmp_path):
    """As root, a data dir below a 0700 folder (like /root) works and keeps its modes."""
    if os.geteuid() != 0 or not pgbin._namespace_available():
        pytest.skip("only meaningful as root with user namespaces")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    pg = EmbeddedPostgres(private / "data", durable=False)
    dsn = await pg.start()
    try:
        conn = await asyncpg.connect(dsn)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        await pg.stop()
    assert (private.stat().st_mode & 0o777) == 0o700
    assert (private / "data" / "postgres").stat().st_uid == 0


def test_an_unreachable_folder_is_a_clear_error(data_dir):
    private = data_dir.parent / "private"
    private.mkdir(mode=0o700)
    nobody = pgbin.RunAs("nobody", 65534, 65534, "/")
    with pytest.raises(EmbeddedPostgresError, match=r"user 'nobody', which cannot enter \S+/private on the way to .*chmod o\+x \S+/private"):
        pgbin.check_traversable(private / "data" / "postgres", nobody)
