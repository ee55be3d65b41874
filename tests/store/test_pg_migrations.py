"""The migration runner: applies on an empty database, is idempotent, refuses edited files, serialises nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest
import pytest_asyncio

from obscura.store.migrate import (
    MIGRATIONS_TABLE, Migration, MigrationError, load_migrations, migration_status, run_migrations,
)
from obscura.store.postgres.pool import with_database
from tests.fixtures.postgres import create_database, drop_database

NAMES = ["0001_core_and_auth.sql", "0002_signal_protocol.sql", "0003_messaging_and_delivery.sql",
         "0004_push_token_type.sql", "0005_attachment_size.sql"]
NEXT = len(NAMES) + 1  # version of the synthetic migrations below


@pytest_asyncio.fixture
async def empty_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    name = await create_database(pg_server_dsn)
    try:
        yield with_database(pg_server_dsn, name)
    finally:
        await drop_database(pg_server_dsn, name)


@pytest_asyncio.fixture
async def conn(empty_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(empty_dsn, timeout=30)
    try:
        yield c
    finally:
        await c.close(timeout=10)


def _migration(version: int, slug: str, sql: str) -> Migration:
    return Migration(version, f"{version:04d}_{slug}.sql", sql, hashlib.sha256(sql.encode()).hexdigest())


def test_files_are_numbered_in_order_with_checksums():
    migrations = load_migrations()
    assert [m.name for m in migrations] == NAMES
    assert [m.version for m in migrations] == list(range(1, NEXT))
    folder = resources.files("obscura.store.migrations")
    for m in migrations:
        assert m.checksum == hashlib.sha256(folder.joinpath(m.name).read_bytes()).hexdigest()
        # App-generated ids (decisions §4.10): no database-side id functions, so PostgreSQL 14+ works.
        assert "default uuidv7" not in m.sql.lower() and "gen_random_uuid" not in m.sql.lower()


async def test_applies_on_an_empty_database(conn, caplog):
    caplog.set_level(logging.INFO, logger="test.migrate")
    assert await run_migrations(conn, logger=logging.getLogger("test.migrate")) == NAMES
    rows = await conn.fetch(f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE} ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(i + 1, n) for i, n in enumerate(NAMES)]
    assert [r["checksum"] for r in rows] == [m.checksum for m in load_migrations()]
    assert all(r["applied_at"] is not None for r in rows)
    assert [r.getMessage() for r in caplog.records] == [f"applied migration {n}" for n in NAMES]
    status = await migration_status(conn)
    assert [(s.version, s.name, s.state) for s in status] == [(i + 1, n, "applied") for i, n in enumerate(NAMES)]


async def test_status_before_anything_is_applied(conn):
    status = await migration_status(conn)
    assert [(s.name, s.state, s.applied_at) for s in status] == [(n, "pending", None) for n in NAMES]
    assert await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None  # status is read-only


async def test_second_run_applies_nothing(conn):
    assert await run_migrations(conn) == NAMES
    before = await conn.fetch(f"SELECT * FROM {MIGRATIONS_TABLE} ORDER BY version")
    assert await run_migrations(conn) == []
    assert await conn.fetch(f"SELECT * FROM {MIGRATIONS_TABLE} ORDER BY version") == before


async def test_accepts_a_pool(empty_dsn):
    pool = await asyncpg.create_pool(empty_dsn, min_size=1, max_size=2)
    try:
        assert await run_migrations(pool) == NAMES
        assert [s.state for s in await migration_status(pool)] == ["applied"] * len(NAMES)
    finally:
        await pool.close()


async def test_only_new_files_are_applied(conn):
    base = load_migrations()
    assert await run_migrations(conn, migrations=base[:2]) == NAMES[:2]
    extra = _migration(NEXT, "extra", "CREATE TABLE extra_t (id INT PRIMARY KEY);")
    assert await run_migrations(conn, migrations=[*base, extra]) == [*NAMES[2:], extra.name]
    assert await conn.fetchval("SELECT to_regclass('extra_t') IS NOT NULL")


async def test_refuses_a_changed_file(conn):
    base = load_migrations()
    await run_migrations(conn)
    edited = dataclasses.replace(base[2], sql=base[2].sql + "\n-- edited\n",
                                 checksum=hashlib.sha256((base[2].sql + "\n-- edited\n").encode()).hexdigest())
    extra = _migration(NEXT, "extra", "CREATE TABLE extra_t (id INT);")
    with pytest.raises(MigrationError, match=r"0003_messaging_and_delivery\.sql was changed.*immutable"):
        await run_migrations(conn, migrations=[base[0], base[1], edited, *base[3:], extra])
    # Nothing was applied, and the lock was released: a correct run still works.
    assert await conn.fetchval("SELECT to_regclass('extra_t')") is None
    status = await migration_status(conn, migrations=[base[0], base[1], edited, *base[3:]])
    assert [s.state for s in status] == ["applied", "applied", "changed"] + ["applied"] * len(base[3:])
    assert await run_migrations(conn) == []


async def test_refuses_a_database_from_a_newer_build(conn):
    base = load_migrations()
    future = _migration(9, "future", "SELECT 1;")
    assert await run_migrations(conn, migrations=[*base, future]) == [*NAMES, "0009_future.sql"]
    with pytest.raises(MigrationError, match=r"0009_future\.sql .*does not know"):
        await run_migrations(conn)
    assert [s.state for s in await migration_status(conn)][-1] == "unknown"


async def test_a_failing_migration_rolls_back_alone(conn):
    base = load_migrations()
    bad = _migration(NEXT, "bad", "CREATE TABLE half_done (id INT); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await run_migrations(conn, migrations=[*base, bad])
    # Earlier files stay applied; the failing one left nothing behind and is not recorded.
    assert [s.state for s in await migration_status(conn, migrations=[*base, bad])] == ["applied"] * len(NAMES) + ["pending"]
    assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0
    assert await run_migrations(conn) == []


async def test_concurrent_runners_apply_each_file_once(empty_dsn):
    # The slow file keeps the first runner inside the lock while the others queue on it.
    migrations = [*load_migrations(), _migration(NEXT, "slow", "CREATE TABLE slow_t (id INT); SELECT pg_sleep(0.5);")]
    conns = [await asyncpg.connect(empty_dsn, timeout=30) for _ in range(4)]
    try:
        results = await asyncio.gather(*(run_migrations(c, migrations=migrations) for c in conns))
        applied = [name for r in results for name in r]
        assert sorted(applied) == sorted(m.name for m in migrations)  # each exactly once, no errors
        assert sum(1 for r in results if r) == 1
        assert await conns[0].fetchval(f"SELECT count(*) FROM {MIGRATIONS_TABLE}") == NEXT
    finally:
        for c in conns:
            await c.close(timeout=10)


async def test_waiting_for_the_lock_times_out(empty_dsn):
    from obscura.store import migrate

    holder = await asyncpg.connect(empty_dsn, timeout=30)
    runner = await asyncpg.connect(empty_dsn, timeout=30)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate._LOCK_KEY)
        with pytest.raises(asyncio.TimeoutError):
            await run_migrations(runner, lock_timeout_s=0.3)
        await holder.execute("SELECT pg_advisory_unlock($1)", migrate._LOCK_KEY)
        assert await run_migrations(runner) == NAMES
    finally:
        await holder.close(timeout=10)
        await runner.close(timeout=10)
