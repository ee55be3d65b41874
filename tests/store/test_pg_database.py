"""The pool built from the OBSCURA_DATABASE_* options and the Database readiness check (spec §2.15)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from obscura.config import load_settings
from obscura.store.postgres import pool as pool_module
from obscura.store.postgres.pool import Database, DatabaseUnavailable, create_pool, with_database
from obscura.store.postgres.stats import pool_usage


def _settings(url: str, **overrides):
    return load_settings(environ={}, db_url=url, **overrides)


@contextlib.asynccontextmanager
async def _database(url: str, max_connections: int, **kwargs) -> AsyncIterator[tuple[Database, asyncpg.Pool]]:
    """A Database over a pool of at most ``max_connections`` (one kept open), closed afterwards."""
    pool = await create_pool(url, _settings(url, db_max_connections=max_connections, db_min_connections=1))
    db = Database(pool, **kwargs)
    try:
        yield db, pool
    finally:
        await db.close()


@pytest_asyncio.fixture
async def silent_server_dsn() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/nothing"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # closed again on exit: nothing listens there


def test_with_database_rewrites_only_the_path():
    assert with_database("postgresql://u:p@h:5/a?sslmode=disable", "b") == "postgresql://u:p@h:5/b?sslmode=disable"
    assert (with_database("postgresql://postgres@/obscura?host=/tmp/x%20y&port=5432", "t_1")
            == "postgresql://postgres@/t_1?host=/tmp/x%20y&port=5432")


async def test_pool_honours_settings(database_url):
    s = _settings(database_url, db_max_connections=4, db_min_connections=2, db_idle_timeout_secs=7)
    pool = await create_pool(database_url, s, command_timeout_s=0.5)
    try:
        assert (pool.get_min_size(), pool.get_max_size()) == (2, 4)
        assert pool.get_size() == 2
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW jit") == "off"
            assert await conn.fetchval("SHOW application_name") == "obscura"
            assert await conn.fetchval("SELECT 1") == 1
            with pytest.raises(asyncio.TimeoutError):   # the default command timeout
                await conn.execute("SELECT pg_sleep(5)")
        assert pool._max_inactive_connection_lifetime == 7
    finally:
        await pool.close()


async def test_min_is_clamped_to_max(database_url):
    pool = await create_pool(database_url, _settings(database_url, db_max_connections=1, db_min_connections=1))
    try:
        assert (pool.get_min_size(), pool.get_max_size()) == (1, 1)
    finally:
        await pool.close()


async def test_create_pool_failures_use_the_spec_strings(silent_server_dsn):
    refused = f"postgresql://postgres@127.0.0.1:{_refused_port()}/x"
    with pytest.raises(DatabaseUnavailable, match=r"^Database connection failed: "):
        await create_pool(refused, _settings(refused, db_min_connections=1))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"^Database connection timed out$"):
        await create_pool(silent_server_dsn, _settings(silent_server_dsn, db_min_connections=1), init_timeout_s=0.3)
    assert time.monotonic() - started < 2


async def test_check_passes(database_url):
    db = await Database.connect(database_url, _settings(database_url, db_min_connections=1))
    try:
        await db.check(2.0)
        await db.check(2.0)
    finally:
        await db.close()


async def test_check_on_a_closed_pool_fails(database_url):
    db = await Database.connect(database_url, _settings(database_url, db_min_connections=1))
    await db.close()
    with pytest.raises(DatabaseUnavailable, match=r"^Database connection failed: .+"):
        await db.check(2.0)
    await db.close()   # idempotent


async def test_check_against_a_silent_server_times_out(silent_server_dsn):
    pool = await asyncpg.create_pool(silent_server_dsn, min_size=0, max_size=2)
    db = Database(pool)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as err:
            await db.check(0.3)
        assert str(err.value) == "Database connection timed out"
        assert 0.25 < time.monotonic() - started < 1.5
    finally:
        await db.close(timeout_s=1)


async def test_check_against_a_refused_port_fails():
    dsn = f"postgresql://postgres@127.0.0.1:{_refused_port()}/x"
    db = Database(await asyncpg.create_pool(dsn, min_size=0, max_size=1))
    try:
        with pytest.raises(DatabaseUnavailable, match=r"^Database connection failed: .+"):
            await db.check(2.0)
    finally:
        await db.close(timeout_s=1)


async def test_acquire_times_out_when_the_pool_is_exhausted(database_url):
    async with _database(database_url, 1, acquire_timeout_s=0.2) as (db, _):
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 2") == 2
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"^Database connection timed out$"):
                async with db.acquire():
                    pass
            assert time.monotonic() - started < 1.0
        async with db.acquire() as conn:   # released properly, usable again
            assert await conn.fetchval("SELECT 3") == 3


async def test_acquire_releases_on_error(database_url):
    async with _database(database_url, 1, acquire_timeout_s=0.5) as (db, pool):
        with pytest.raises(ZeroDivisionError):
            async with db.acquire():
                1 / 0
        assert (db.spare_count, pool.get_idle_size()) == (0, 1)   # back through the pool, not kept aside
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_connections_are_recycled_after_max_lifetime(database_url):
    async with _database(database_url, 1, max_lifetime_s=0.2) as (db, _):
        async with db.acquire() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
        await asyncio.sleep(0.5)
        async with db.acquire() as conn:
            second = await conn.fetchval("SELECT pg_backend_pid()")
        assert first != second
    assert db._recycler is None


async def test_without_max_lifetime_the_connection_is_kept(database_url):
    async with _database(database_url, 1, max_lifetime_s=0) as (db, _):
        async with db.acquire() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
        await asyncio.sleep(0.3)
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == first


async def test_close_terminates_connections_still_busy(database_url):
    pool = await create_pool(database_url, _settings(database_url, db_max_connections=1, db_min_connections=1))
    db = Database(pool)
    conn = await pool.acquire()
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    started = time.monotonic()
    await db.close(timeout_s=0.3)
    assert time.monotonic() - started < 2
    with pytest.raises(asyncpg.InterfaceError):
        await conn.fetchval("SELECT 1")
    observer = await asyncpg.connect(database_url, timeout=10)
    try:
        for _ in range(100):   # the server notices the dropped socket almost at once
            if not await observer.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the busy connection survived close()")
    finally:
        await observer.close()


async def test_a_clean_release_keeps_the_connection_aside_for_the_next_acquire(database_url):
    async with _database(database_url, 2) as (db, pool):
        async with db.acquire() as first:
            await first.fetchval("SELECT 1")
        # asyncpg still counts it as in use; the node's pool gauges count it as idle
        assert (db.spare_count, pool.get_idle_size()) == (1, 0)
        assert pool_usage(db) == {"active": 0, "idle": 1, "max": 2}
        async with db.acquire() as again:
            assert again is first   # the same proxy: it did not go through the pool
            assert db.spare_count == 0
        await db.check(1.0)   # the readiness probe takes a spare too
        assert db.spare_count == 1


async def test_a_connection_left_in_a_transaction_goes_back_through_the_pool(database_url):
    async with _database(database_url, 1, acquire_timeout_s=0.5) as (db, pool):
        async with db.acquire() as conn:
            await conn.execute("BEGIN")   # never committed
        assert db.spare_count == 0
        async with db.acquire() as conn:
            assert not conn.is_in_transaction()   # the pool's reset rolled it back
            assert await conn.fetchval("SELECT 1") == 1


async def test_spares_go_back_to_the_pool_after_a_while(database_url, monkeypatch):
    monkeypatch.setattr(pool_module, "SPARE_SECONDS", 0.05)
    async with _database(database_url, 3) as (db, pool):
        async def hold() -> None:
            async with db.acquire() as conn:
                await conn.fetchval("SELECT pg_sleep(0.05)")
        await asyncio.gather(hold(), hold(), hold())
        assert (db.spare_count, pool.get_idle_size()) == (3, 0)
        for _ in range(100):
            if pool.get_idle_size() == 3:
                break
            await asyncio.sleep(0.02)
        assert (db.spare_count, pool.get_idle_size()) == (0, 3)   # idle timeout and recycling apply again


async def _terminate(observer: asyncpg.Connection, conn: asyncpg.Connection) -> int:
    """End ``conn``'s server process and wait until the client has noticed; its pid."""
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    assert await observer.fetchval("SELECT pg_terminate_backend($1)", backend)
    for _ in range(100):
        try:
            if conn.is_closed():
                break
        except asyncpg.InterfaceError:   # asyncpg already gave the lost connection's slot back
            break
        await asyncio.sleep(0.02)
    return backend


async def test_a_lost_connection_is_neither_kept_nor_handed_out(database_url):
    observer = await asyncpg.connect(database_url, timeout=10)
    try:
        async with _database(database_url, 2) as (db, _):
            async with db.acquire() as spare:
                await spare.fetchval("SELECT 1")
            backend = await _terminate(observer, spare)   # lost while it sits aside
            async with db.acquire() as conn:
                assert await conn.fetchval("SELECT pg_backend_pid()") != backend
                backend = await _terminate(observer, conn)   # lost inside the block, which ends cleanly
            assert db.spare_count == 0
            async with db.acquire() as conn:
                assert await conn.fetchval("SELECT pg_backend_pid()") != backend
    finally:
        await observer.close()


async def test_close_does_not_wait_for_its_own_spares(database_url):
    pool = await create_pool(database_url, _settings(database_url, db_max_connections=2, db_min_connections=1))
    db = Database(pool)
    async with db.acquire() as conn:
        await conn.fetchval("SELECT 1")
    started = time.monotonic()
    await db.close(timeout_s=5)
    assert time.monotonic() - started < 1   # not the 5 s of a connection nobody releases
    assert pool.is_closing() and db.spare_count == 0
