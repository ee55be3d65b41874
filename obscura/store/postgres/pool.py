"""The asyncpg pool built from the OBSCURA_DATABASE_* options (spec §7) and its readiness check (§2.15)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from obscura.aio import LoopBound

if TYPE_CHECKING:
    from obscura.config import Settings

__all__ = ["Database", "DatabaseUnavailable", "create_pool", "with_database"]

_log = logging.getLogger("obscura.store.postgres")

# Short OLTP queries only: JIT compilation costs more than it saves (and shows up as
# multi-millisecond spikes on the first execution of a plan).
_SERVER_SETTINGS = {"jit": "off", "application_name": "obscura"}

# Database.acquire keeps up to this many cleanly returned connections aside for the next acquire,
# each for at most SPARE_SECONDS before it goes back through the pool.
SPARES_MAX = 8
SPARE_SECONDS = 1.0


class DatabaseUnavailable(RuntimeError):
    """The database did not answer. The message is one of spec §2.15's internal strings
    ("Database connection timed out" / "Database connection failed: ..."): log it, never return it."""


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server (URL-form DSNs only)."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))


async def create_pool(dsn: str, settings: Settings, *, command_timeout_s: float | None = None,
                      init_timeout_s: float = 30.0,
                      query_logger: Callable[[Any], None] | None = None) -> asyncpg.Pool:
    """An asyncpg pool sized and timed by ``settings``; raises DatabaseUnavailable if it cannot connect.

    - db_max_connections / db_min_connections: pool bounds (min is clamped to max);
    - db_acquire_timeout_secs: also the per-connection connect timeout (use Database.acquire for
      the acquire timeout);
    - db_idle_timeout_secs: max_inactive_connection_lifetime (0 = keep idle connections);
    - db_max_lifetime_secs: not an asyncpg option; Database recycles connections (see there);
    - command_timeout_s: default per-statement timeout, defaults to server_request_timeout_secs;
    - query_logger: added to every connection (Telemetry.query_logger: statement spans).
    """
    max_size = settings.db_max_connections
    timeout = float(command_timeout_s if command_timeout_s is not None else settings.server_request_timeout_secs)
    try:
        async with asyncio.timeout(init_timeout_s):
            return await asyncpg.create_pool(
                dsn,
                min_size=min(settings.db_min_connections, max_size),
                max_size=max_size,
                max_inactive_connection_lifetime=float(settings.db_idle_timeout_secs),
                timeout=float(settings.db_acquire_timeout_secs),
                command_timeout=timeout,
                server_settings=dict(_SERVER_SETTINGS),
                reset=_lean_reset,
                init=None if query_logger is None else functools.partial(_add_query_logger, query_logger),
            )
    except TimeoutError:
        raise DatabaseUnavailable("Database connection timed out") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"Database connection failed: {exc}") from exc


async def _add_query_logger(logger: Callable[[Any], None], conn: asyncpg.Connection) -> None:
    conn.add_query_logger(logger)


async def _lean_reset(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL): a round trip on every release, and we keep no session state outside a transaction (the
    migration lock is released explicitly). An open transaction is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database(LoopBound):
    """Owns the pool: acquire with a timeout, readiness check, connection recycling, close.

    db_max_lifetime_secs is approximated by a recycler task that calls
    ``pool.expire_connections()`` every max_lifetime seconds: idle connections are replaced on
    their next acquire and busy ones when released, so no connection lives much longer than
    max_lifetime (plus its longest checkout). asyncpg has no per-connection age limit.
    """

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout_s: float = 3.0, max_lifetime_s: float = 0.0) -> None:
        self._pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._spares: list[asyncpg.Connection] = []  # see acquire()
        self._spares_max = min(SPARES_MAX, pool.get_max_size())
        self._sweep: asyncio.TimerHandle | None = None
        self._releases: set[asyncio.Task] = set()
        self._closing = False
        self._recycler: asyncio.Task[None] | None = None
        if max_lifetime_s > 0:
            self._recycler = asyncio.get_running_loop().create_task(
                self._recycle(max_lifetime_s), name="obscura-db-recycler")

    @classmethod
    async def connect(cls, dsn: str, settings: Settings, **pool_kwargs: Any) -> Database:
        """create_pool(dsn, settings) wrapped in a Database (fatal at startup if it raises, spec §1.3)."""
        pool = await create_pool(dsn, settings, **pool_kwargs)
        return cls(pool, acquire_timeout_s=float(settings.db_acquire_timeout_secs),
                   max_lifetime_s=float(settings.db_max_lifetime_secs))

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside one transaction (committed on success, rolled back on error)."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    def acquire(self) -> _Lease:
        """``async with db.acquire() as conn``: a pooled connection; DatabaseUnavailable("Database
        connection timed out") when none frees up within db_acquire_timeout_secs.

        A connection that comes back cleanly (no error, no open transaction) is kept as a spare
        for the next acquire instead of going through asyncpg's release and acquire: those cost
        two tasks (shield, wait_for), two timeouts, a queue and an inactivity timer per
        statement, about as much client CPU as a trivial statement itself (``SELECT 1``: 55 us
        through the pool, 31 us through a spare, 26 us on a held connection; bench/RESULTS.md).
        At most SPARES_MAX are kept, and they go back to the pool within SPARE_SECONDS of being
        put aside, so the pool's idle timeout, max_queries and recycling still apply to them."""
        return _Lease(self)

    def _take_spare(self) -> asyncpg.Connection | None:
        spares = self._spares
        while spares:
            conn = spares.pop()
            if _alive(conn):
                return conn
            self._spawn_release(conn)  # the pool cleans up after it (a no-op once asyncpg has)
        return None

    async def _acquire_pooled(self) -> asyncpg.Connection:
        try:
            return await self._pool.acquire(timeout=self._acquire_timeout_s)
        except TimeoutError:
            raise DatabaseUnavailable("Database connection timed out") from None

    def _put_back(self, conn: asyncpg.Connection) -> bool:
        """Keep a cleanly returned connection as a spare; False when it must go through the pool."""
        if (self._closing or len(self._spares) >= self._spares_max or not _alive(conn)
                or conn.is_in_transaction()):
            return False
        self._spares.append(conn)
        if self._sweep is None:
            self._sweep = self.bound_loop.call_later(SPARE_SECONDS, self._return_spares)
        return True

    async def _release(self, conn: asyncpg.Connection) -> None:
        await self._pool.release(conn, timeout=self._acquire_timeout_s)

    def _return_spares(self) -> None:
        """Hand every spare back to the pool (the timer, recycling and close)."""
        self._sweep = None
        spares, self._spares = self._spares, []
        for conn in spares:
            self._spawn_release(conn)

    def _spawn_release(self, conn: asyncpg.Connection) -> None:
        task = self.bound_loop.create_task(self._release(conn))
        self._releases.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task) -> None:
        self._releases.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("returning a database connection to the pool failed", exc_info=task.exception())

    async def _settle_spares(self) -> None:
        """Return the spares and wait until the pool has them (recycling, close)."""
        if self._sweep is not None:
            self._sweep.cancel()
        self._return_spares()
        if self._releases:
            await asyncio.wait(list(self._releases))

    @property
    def spare_count(self) -> int:
        """Connections kept aside by acquire(): idle, though the pool counts them as in use."""
        return len(self._spares)

    async def check(self, timeout_s: float) -> None:
        """Readiness probe (spec §2.15): ``SELECT 1`` within ``timeout_s`` or DatabaseUnavailable."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            raise DatabaseUnavailable("Database connection timed out") from None
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # any driver, OS or protocol failure is "failed", with its reason
            raise DatabaseUnavailable(f"Database connection failed: {exc}") from exc

    async def _recycle(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self._settle_spares()  # spares are expired with the rest
                await self._pool.expire_connections()
            except Exception:  # a closing pool; the next tick or close() ends the loop
                _log.warning("database connection recycling failed", exc_info=True)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop recycling and close the pool, terminating connections still busy after ``timeout_s``."""
        self._closing = True
        if self._recycler is not None:
            self._recycler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recycler
            self._recycler = None
        if self._pool.is_closing():
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._settle_spares()
                await self._pool.close()
        except TimeoutError:
            _log.warning("database pool did not close within %.1fs; terminating connections", timeout_s)
            self._pool.terminate()


def _alive(conn: asyncpg.Connection) -> bool:
    """Not closed; a pool proxy whose connection was lost may already have been handed back to the
    pool by asyncpg itself, and then answers every call with InterfaceError."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class _Lease:
    """The async context manager of Database.acquire (a class: cheaper than a generator-based one)."""

    __slots__ = ("_db", "_conn")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        conn = self._db._take_spare()
        if conn is None:
            conn = await self._db._acquire_pooled()
        self._conn = conn
        return conn

    async def __aexit__(self, exc_type, exc, tb) -> None:
        conn, self._conn = self._conn, None
        if exc_type is None and self._db._put_back(conn):
            return
        await self._db._release(conn)
