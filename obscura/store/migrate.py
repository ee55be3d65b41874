"""Schema migration runner: numbered, immutable SQL files applied once each, under an advisory lock."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from importlib import resources

import asyncpg

__all__ = [
    "Migration", "MigrationError", "MigrationStatus", "MIGRATIONS_TABLE",
    "load_migrations", "run_migrations", "migration_status",
]

MIGRATIONS_TABLE = "obscura_schema_migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# One fixed key for pg_advisory_lock: every node that starts against the same database
# serialises on it, so two nodes booting at once never apply the same file twice.
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"obscura:" + MIGRATIONS_TABLE.encode()).digest()[:8], "big", signed=True)

_log = logging.getLogger("obscura.store.migrate")

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


class MigrationError(RuntimeError):
    """The database and the migration files disagree; the node must not start."""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str        # file name, e.g. "0001_core_and_auth.sql"
    sql: str
    checksum: str    # hex sha256 of the file's bytes


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    state: str       # "applied", "pending", "changed" (checksum differs) or "unknown" (no such file)
    applied_at: dt.datetime | None


def load_migrations(package: str = "obscura.store.migrations") -> list[Migration]:
    """The migration files shipped in ``package``, in version order."""
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        match = _FILE_RE.match(entry.name)
        if not match:
            continue
        raw = entry.read_bytes()
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest())
    return [found[v] for v in sorted(found)]


@contextlib.asynccontextmanager
async def _connection(conn_or_pool: asyncpg.Connection | asyncpg.Pool,
                      timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire(timeout=timeout_s) as conn:
            yield conn
    else:
        yield conn_or_pool


async def _applied(conn: asyncpg.Connection, timeout_s: float) -> dict[int, asyncpg.Record] | None:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", MIGRATIONS_TABLE, timeout=timeout_s)
    if not exists:
        return None
    rows = await conn.fetch(f"SELECT version, name, checksum, applied_at FROM {MIGRATIONS_TABLE} ORDER BY version",
                            timeout=timeout_s)
    return {r["version"]: r for r in rows}


def _verify(applied: dict[int, asyncpg.Record], migrations: Sequence[Migration]) -> None:
    """Refuse to start when an applied file changed or vanished: files are immutable."""
    by_version = {m.version: m for m in migrations}
    for version, row in applied.items():
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"database has migration {row['name']} (version {version}) that this build does not know; "
                "it was migrated by a newer obscura: run that version or restore the database")
        if m.checksum != row["checksum"] or m.name != row["name"]:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied to this database "
                f"(applied {row['name']} sha256 {row['checksum'][:12]}, file sha256 {m.checksum[:12]}); "
                "migration files are immutable: restore the original file and put the change in a new migration")


async def run_migrations(conn_or_pool: asyncpg.Connection | asyncpg.Pool, *,
                         logger: logging.Logger | None = None,
                         migrations: Sequence[Migration] | None = None,
                         lock_timeout_s: float = 60.0,
                         statement_timeout_s: float = 600.0) -> list[str]:
    """Apply every pending migration, each in its own transaction; return the names applied.

    Raises MigrationError when the database holds a migration that changed or that this build
    does not know, and asyncio.TimeoutError when another node holds the lock too long.
    """
    log = logger or _log
    todo = load_migrations() if migrations is None else list(migrations)
    done: list[str] = []
    async with _connection(conn_or_pool, lock_timeout_s) as conn:
        # Session-level lock: held across the per-file transactions below.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY, timeout=lock_timeout_s)
        try:
            await conn.execute(_CREATE_TABLE, timeout=statement_timeout_s)
            applied = await _applied(conn, statement_timeout_s) or {}
            _verify(applied, todo)
            for m in todo:
                if m.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql, timeout=statement_timeout_s)
                    await conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum, timeout=statement_timeout_s)
                log.info("applied migration %s", m.name)
                done.append(m.name)
        finally:
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY, timeout=lock_timeout_s)
    if not done:
        log.debug("schema up to date (%d migrations)", len(todo))
    return done


async def migration_status(conn_or_pool: asyncpg.Connection | asyncpg.Pool, *,
                           migrations: Sequence[Migration] | None = None,
                           timeout_s: float = 10.0) -> list[MigrationStatus]:
    """Every known or applied migration with its state, in version order (read-only, no lock)."""
    todo = load_migrations() if migrations is None else list(migrations)
    async with _connection(conn_or_pool, timeout_s) as conn:
        applied = await _applied(conn, timeout_s) or {}
    out: dict[int, MigrationStatus] = {}
    for m in todo:
        row = applied.get(m.version)
        if row is None:
            out[m.version] = MigrationStatus(m.version, m.name, "pending", None)
        else:
            same = row["checksum"] == m.checksum and row["name"] == m.name
            out[m.version] = MigrationStatus(m.version, m.name, "applied" if same else "changed", row["applied_at"])
    for version, row in applied.items():
        if version not in out:
            out[version] = MigrationStatus(version, row["name"], "unknown", row["applied_at"])
    return [out[v] for v in sorted(out)]
