"""Micro-benchmarks of the message store against a real PostgreSQL: batched insert, paged fetch, batched delete.

Run: .venv/bin/pytest bench/bench_store.py --benchmark-group-by=group --benchmark-columns=min,median,ops
Uses OBSCURA_BENCH_DATABASE_URL / OBSCURA_TEST_DATABASE_URL, else postgres@127.0.0.1:5432 (a scratch
database is created and dropped). Durable commit, like production.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from bench.pgutil import create_scratch, drop_scratch, seed_devices, server_dsn
from obscura import _speedups
from obscura.config import load_settings
from obscura.store.postgres.messages import MessageRepo
from obscura.store.postgres.pool import Database

CONTENT = os.urandom(256)


@pytest.fixture(scope="module")
def store():
    loop = asyncio.new_event_loop()
    dsn = server_dsn()
    url = loop.run_until_complete(create_scratch(dsn))
    db = loop.run_until_complete(Database.connect(url, load_settings(environ={}, db_url=url)))
    async def seed():
        async with db.acquire() as conn:
            return await seed_devices(conn, 11)
    devices = loop.run_until_complete(seed())
    try:
        yield loop, MessageRepo(db), devices[0], [d for _, d in devices[1:]]
    finally:
        loop.run_until_complete(db.close())
        loop.run_until_complete(drop_scratch(dsn, url))
        loop.close()


def _rows(targets, count):
    return [(_speedups.uuid7(), targets[i % len(targets)], uuid.uuid4(), CONTENT) for i in range(count)]


@pytest.mark.benchmark(group="store: one call (durable commit)")
@pytest.mark.parametrize("batch", [1, 100])
def test_enqueue(benchmark, store, batch):
    loop, repo, sender, targets = store
    result = benchmark.pedantic(lambda: loop.run_until_complete(repo.enqueue(*sender, 30, _rows(targets, batch))),
                                rounds=20, iterations=1)
    assert len(result[1]) == batch


@pytest.mark.benchmark(group="store: one call (durable commit)")
def test_fetch_page_of_50(benchmark, store):
    loop, repo, sender, targets = store
    loop.run_until_complete(repo.enqueue(*sender, 30, _rows(targets[:1], 60)))
    rows = benchmark(lambda: loop.run_until_complete(repo.fetch_pending(targets[0], None, 50)))
    assert len(rows) == 50


@pytest.mark.benchmark(group="store: one call (durable commit)")
@pytest.mark.parametrize("batch", [1, 100])
def test_enqueue_then_delete(benchmark, store, batch):
    """Insert then ACK-delete ``batch`` messages of one device: the relay's database work."""
    loop, repo, sender, targets = store

    async def cycle():
        rows = _rows(targets[:1], batch)
        await repo.enqueue(*sender, 30, rows)
        return await repo.delete_acked(targets[0], [r[0] for r in rows])
    assert benchmark.pedantic(lambda: loop.run_until_complete(cycle()), rounds=20, iterations=1) == batch


@pytest.mark.benchmark(group="store: SELECT 1, by how it gets its connection")
@pytest.mark.parametrize("how", ["held connection", "Database.acquire (a spare)", "asyncpg pool acquire"])
def test_select_1(benchmark, store, how):
    """What a statement pays for its connection: Database.acquire hands out a spare (pool.py)."""
    loop, repo, _, _ = store
    db = repo._db
    held = loop.run_until_complete(db.pool.acquire())

    async def on_held():
        return await held.fetchval("SELECT 1")

    async def via_database():
        async with db.acquire() as conn:
            return await conn.fetchval("SELECT 1")

    async def via_pool():
        async with db.pool.acquire() as conn:
            return await conn.fetchval("SELECT 1")

    run = {"held connection": on_held, "Database.acquire (a spare)": via_database, "asyncpg pool acquire": via_pool}[how]
    try:
        assert benchmark(lambda: loop.run_until_complete(run())) == 1
    finally:
        loop.run_until_complete(db.pool.release(held))
