"""Scratch PostgreSQL databases for benchmarks: create, migrate, seed devices, drop."""

from __future__ import annotations

import os
import uuid

import asyncpg

from obscura.store.migrate import run_migrations
from obscura.store.postgres.pool import with_database

__all__ = ["server_dsn", "create_scratch", "drop_scratch", "seed_devices"]

_TIMEOUT_S = 60.0


def server_dsn() -> str:
    """A server where we may CREATE DATABASE: OBSCURA_BENCH_DATABASE_URL, OBSCURA_TEST_DATABASE_URL,
    else the local PostgreSQL on 127.0.0.1:5432."""
    return (os.environ.get("OBSCURA_BENCH_DATABASE_URL") or os.environ.get("OBSCURA_TEST_DATABASE_URL")
            or "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_scratch(dsn: str, *, migrate: bool = True) -> str:
    """Create a uniquely named, migrated database; returns its DSN."""
    name = f"obscura_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn, timeout=_TIMEOUT_S)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"', timeout=_TIMEOUT_S)
    finally:
        await conn.close(timeout=10)
    url = with_database(dsn, name)
    if migrate:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            await run_migrations(pool)
        finally:
            await pool.close()
    return url


async def drop_scratch(dsn: str, scratch_url: str) -> None:
    name = scratch_url.rsplit("/", 1)[-1].split("?")[0]
    conn = await asyncpg.connect(dsn, timeout=_TIMEOUT_S)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=_TIMEOUT_S)
    finally:
        await conn.close(timeout=10)


async def seed_devices(conn: asyncpg.Connection, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` users with one device each (direct rows: no argon2); returns (user id, device id)s."""
    users = [uuid.uuid4() for _ in range(count)]
    devices = [uuid.uuid4() for _ in range(count)]
    await conn.execute(
        "INSERT INTO users (id, username, password_hash) SELECT u, 'b' || replace(u::text, '-', ''), 'x' "
        "FROM unnest($1::uuid[]) AS u", users)
    await conn.execute("INSERT INTO devices (id, user_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
                       devices, users)
    return list(zip(users, devices))
