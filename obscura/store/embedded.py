"""Embedded PostgreSQL in the data folder (decisions.md §5): init once, start, share, stop cleanly.

Layout under ``data_dir``:
  postgres/        the cluster (PGDATA, mode 0700); the Unix socket lives here, no TCP port
  postgres.lock    control lock: start and stop decisions are made one process at a time
  postgres.users   every process using the server holds a shared flock on it while it does
  postgres.owner   identity (pid, start time) of the postmaster an obscura process started

Sharing rule: a process that finds the server running reuses it. On stop, the last user (the
only one able to upgrade to an exclusive lock on postgres.users) stops the server, and only if
obscura started it (postgres.owner matches); a server someone else started is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import asyncpg

from obscura.store.pgbin import (
    EmbeddedPostgresError, PgBinaries, RunAs, check_traversable, chown_to, find_binaries,
    resolve_run_as, run_pg,
)

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

_log = logging.getLogger("obscura.store.embedded")
_SUPERUSER = "postgres"
_PORT = 5432          # names the socket file only: the server listens on no TCP address
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


class EmbeddedPostgres:
    """A PostgreSQL server living in ``data_dir``/postgres, reachable over a Unix socket."""

    def __init__(self, data_dir: str | os.PathLike[str], *, database: str = "obscura",
                 run_as: str | None = None, durable: bool = True,
                 start_timeout_s: float = 60.0, stop_timeout_s: float = 30.0) -> None:
        """``durable=False`` turns fsync off: for throwaway test clusters only."""
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self._requested_user = run_as
        self._durable = durable
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._users_file: IO[str] | None = None
        self._run_as: RunAs | None = None
        self._bins: PgBinaries | None = None
        self._server_dsn: str | None = None
        self.started_here = False   # True when this instance launched the postmaster

    # -- public API ---------------------------------------------------------------------------
    @property
    def dsn(self) -> str | None:
        """DSN of the application database while started, else None."""
        return None if self._server_dsn is None else _with_db(self._server_dsn, self.database)

    @property
    def admin_dsn(self) -> str | None:
        """DSN of the ``postgres`` maintenance database while started (for CREATE DATABASE)."""
        return None if self._server_dsn is None else _with_db(self._server_dsn, "postgres")

    async def start(self) -> str:
        """Start (or join) the server, create the application database if missing; return its DSN."""
        if self._server_dsn is None:
            await asyncio.to_thread(self._start_blocking)
            try:
                await self._ensure_database()
            except BaseException:
                await asyncio.to_thread(self._stop_blocking)
                raise
        assert self.dsn is not None
        return self.dsn

    async def stop(self) -> None:
        """Leave the server; the last obscura user stops it (fast shutdown). Idempotent."""
        if self._users_file is not None:
            await asyncio.to_thread(self._stop_blocking)

    @property
    def postmaster_pid(self) -> int | None:
        ident = self._postmaster_identity()
        return int(ident.split()[0]) if ident else None

    # -- start --------------------------------------------------------------------------------
    def _start_blocking(self) -> None:
        if not self.data_dir.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                # The server's user (never root) must be able to pass through the folder we made.
                self.data_dir.chmod(0o711)
        with self._control_lock(self._start_timeout_s):
            users = open(self.data_dir / "postgres.users", "a+")  # noqa: SIM115 (held until stop)
            try:
                # Never blocks: an exclusive holder also holds the control lock, which we have.
                fcntl.flock(users, fcntl.LOCK_SH | fcntl.LOCK_NB)
                self._run_as = resolve_run_as(self.pgdata, self._requested_user)
                self._bins = find_binaries(self.pgdata)
                if self._run_as is not None:
                    check_traversable(self.pgdata, self._run_as)
                    check_traversable(self._bins.bin_dir / "postgres", self._run_as)
                if not (self.pgdata / "PG_VERSION").is_file():
                    self._initdb()
                if self._status() == 0:
                    self._wait_ready()
                    _log.info("embedded PostgreSQL already running in %s; joining it", self.pgdata)
                else:
                    self._launch()
                self._server_dsn = self._read_server_dsn()
            except BaseException:
                users.close()
                raise
            self._users_file = users

    def _initdb(self) -> None:
        """initdb into a scratch folder, then rename: a crash never leaves a half-made cluster."""
        assert self._bins is not None
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION); move it away")
            self.pgdata.rmdir()
        for stale in self.data_dir.glob(".postgres.init-*"):
            shutil.rmtree(stale, ignore_errors=True)
        scratch = self.data_dir / f".postgres.init-{os.getpid()}"
        scratch.mkdir(mode=0o700)
        chown_to(scratch, self._run_as)
        argv = [self._bins.exe("initdb"), "-D", str(scratch), "-U", _SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if not self._durable:
            argv.append("--no-sync")
        _log.info("creating embedded PostgreSQL %d cluster in %s (binaries: %s)",
                  self._bins.major, self.pgdata, self._bins.source)
        try:
            run_pg(argv, self._run_as, self._start_timeout_s)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        os.rename(scratch, self.pgdata)

    def _short_socket_dir(self) -> Path | None:
        """None when the socket fits in PGDATA; else a short private folder keyed by the cluster path."""
        if len(str(self.pgdata / f".s.PGSQL.{_PORT}")) <= _MAX_SOCKET_PATH:
            return None
        return Path("/tmp") / f"obscura-pg-{hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]}"

    def _socket_dir(self) -> Path:
        short = self._short_socket_dir()
        if short is None:
            return self.pgdata
        short.mkdir(mode=0o700, exist_ok=True)
        chown_to(short, self._run_as)
        return short

    def _launch(self) -> None:
        assert self._bins is not None
        settings = {
            "listen_addresses": "", "port": str(_PORT), "unix_socket_directories": str(self._socket_dir()),
            "unix_socket_permissions": "0700",
            # Bounded server logs inside the cluster: one file per weekday, overwritten weekly.
            "logging_collector": "on", "log_directory": "log", "log_filename": "postgresql-%a.log",
            "log_truncate_on_rotation": "on", "log_rotation_age": "1d", "log_rotation_size": "0",
        }
        if not self._durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        opts = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        argv = [self._bins.exe("pg_ctl"), "start", "-D", str(self.pgdata), "-w",
                "-t", str(int(self._start_timeout_s)), "-l", str(self.pgdata / "startup.log"), "-o", opts]
        run_pg(argv, self._run_as, self._start_timeout_s + 5)
        ident = self._postmaster_identity()
        if ident is None:
            raise EmbeddedPostgresError(f"PostgreSQL in {self.pgdata} started but wrote no postmaster.pid")
        (self.data_dir / "postgres.owner").write_text(ident + "\n")
        self.started_here = True
        _log.info("embedded PostgreSQL started in %s (pid %s)", self.pgdata, ident.split()[0])

    def _status(self) -> int:
        """pg_ctl status: 0 running, 3 not running."""
        assert self._bins is not None
        return run_pg([self._bins.exe("pg_ctl"), "status", "-D", str(self.pgdata)],
                      self._run_as, 30, check=False).returncode

    def _pid_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return []

    def _postmaster_identity(self) -> str | None:
        lines = self._pid_lines()
        return f"{lines[0].strip()} {lines[2].strip()}" if len(lines) >= 3 else None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            lines = self._pid_lines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"PostgreSQL in {self.pgdata} is running but never became ready")
            time.sleep(0.05)

    def _read_server_dsn(self) -> str:
        lines = self._pid_lines()
        if len(lines) < 6:
            raise EmbeddedPostgresError(f"cannot read {self.pgdata / 'postmaster.pid'}")
        port = lines[3].strip() or str(_PORT)
        socket_dir = lines[4].strip().split(",")[0].strip()
        if socket_dir:
            return f"postgresql://{_SUPERUSER}@/postgres?host={urllib.parse.quote(socket_dir)}&port={port}"
        host = lines[5].strip().split(",")[0].strip() or "127.0.0.1"
        host = "127.0.0.1" if host in ("*", "0.0.0.0") else host
        return f"postgresql://{_SUPERUSER}@{host}:{port}/postgres"

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn, timeout=self._start_timeout_s)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database, timeout=30)
            if not exists:
                # A concurrent starter may win the race; either way the database exists.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    await conn.execute(f'CREATE DATABASE "{self.database}"', timeout=60)
                    _log.info("created database %s", self.database)
        finally:
            await conn.close(timeout=10)

    # -- stop ---------------------------------------------------------------------------------
    def _stop_blocking(self) -> None:
        users = self._users_file
        assert users is not None
        try:
            with self._control_lock(self._stop_timeout_s):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    last = True
                except BlockingIOError:
                    last = False
                if last:
                    self._stop_if_ours()
                else:
                    _log.info("embedded PostgreSQL still used by another process; leaving it running")
        finally:
            users.close()
            self._users_file = None
            self._server_dsn = None
            self.started_here = False

    def _stop_if_ours(self) -> None:
        assert self._bins is not None
        ident = self._postmaster_identity()
        marker = self.data_dir / "postgres.owner"
        ours = marker.read_text().strip() if marker.exists() else None
        if ident is None or self._status() != 0:
            marker.unlink(missing_ok=True)
            return
        if ident != ours:
            _log.info("embedded PostgreSQL in %s was not started by obscura; leaving it running", self.pgdata)
            return
        pg_ctl = [self._bins.exe("pg_ctl"), "stop", "-D", str(self.pgdata), "-w", "-t", str(int(self._stop_timeout_s))]
        try:
            run_pg([*pg_ctl, "-m", "fast"], self._run_as, self._stop_timeout_s + 5)
        except EmbeddedPostgresError:
            _log.warning("PostgreSQL did not stop within %.0fs; forcing an immediate shutdown", self._stop_timeout_s)
            run_pg([*pg_ctl, "-m", "immediate"], self._run_as, self._stop_timeout_s + 5)
        _wait_gone(int(ident.split()[0]), 5.0)
        marker.unlink(missing_ok=True)
        short = self._short_socket_dir()
        if short is not None:
            with contextlib.suppress(OSError):
                short.rmdir()
        _log.info("embedded PostgreSQL stopped")

    # -- locking ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _control_lock(self, timeout_s: float) -> Iterator[None]:
        """Exclusive flock on postgres.lock, polled so a stuck peer yields a clear error, not a hang."""
        with open(self.data_dir / "postgres.lock", "a+") as f:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(
                            f"another process kept {self.data_dir / 'postgres.lock'} locked for {timeout_s:.0f}s") from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _wait_gone(pid: int, timeout_s: float) -> None:
    """pg_ctl -w returns once postmaster.pid is gone; the process itself exits a moment later."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return
        except (PermissionError, OSError, IndexError):
            state = "?"
        if state == "Z":   # exited; only waiting to be reaped by its parent
            return
        time.sleep(0.01)
    _log.warning("PostgreSQL process %d still present %.0fs after shutdown", pid, timeout_s)


def _with_db(dsn: str, database: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))
