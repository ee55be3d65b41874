"""The only module that wires concrete classes together: start-up, serving and shutdown of a node."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

from obscura.api.accounts import add_account_routes
from obscura.api.docs import add_docs_routes
from obscura.api.health import add_management_routes
from obscura.api.ratelimit import RateLimitHook
from obscura.blobs import BlobStore, make_blob_store
from obscura.config import Settings
from obscura.coord.base import Coordinator
from obscura.http.router import Router
from obscura.http.server import HttpServer
from obscura.services.accounts import AccountService, SessionIssuer
from obscura.services.health import HealthService
from obscura.services.passwords import PasswordService
from obscura.services.tokens import TokenService
from obscura.store.postgres.pool import Database
from obscura.store.embedded import EmbeddedPostgres
from obscura.store.migrate import run_migrations
from obscura.store.postgres.accounts import AccountRepo
from obscura.telemetry import Telemetry

__all__ = ["App", "run"]

log = logging.getLogger("obscura.app")


@dataclass
class _Resources:
    """What a running node owns, in start order; closed in reverse."""

    embedded_pg: EmbeddedPostgres | None = None
    database: Database | None = None
    coordinator: Coordinator | None = None
    blobs: BlobStore | None = None
    main_server: HttpServer | None = None
    mgmt_server: HttpServer | None = None
    workers: list[asyncio.Task] = field(default_factory=list)


class App:
    """One Obscura node. ``await start()``, then ``await stop()`` (or ``serve_forever()``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.mgmt_port: int | None = None
        self._r = _Resources()
        self._stopping = asyncio.Event()
        self._stopped = False
        self.telemetry = Telemetry()
        self.tokens = TokenService(settings.auth_jwt_secret, settings.auth_token_ttl_secs)
        self.passwords = PasswordService()

    # -- accessors for tests and later layers ----------------------------------------------------
    @property
    def database(self) -> Database:
        assert self._r.database is not None
        return self._r.database

    @property
    def coordinator(self) -> Coordinator:
        assert self._r.coordinator is not None
        return self._r.coordinator

    @property
    def blobs(self) -> BlobStore:
        assert self._r.blobs is not None
        return self._r.blobs

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        if s.auth_jwt_secret == "change_me_in_production" or len(s.auth_jwt_secret.encode()) < 32:
            log.warning("OBSCURA_AUTH_JWT_SECRET is the default or shorter than 32 bytes: "
                        "set a long random secret (the same on every node) before production use")
        try:
            dsn = s.db_url
            if dsn is None:
                self._r.embedded_pg = EmbeddedPostgres(s.data_dir)
                dsn = await self._r.embedded_pg.start()
                log.info("embedded PostgreSQL ready in %s", os.path.join(s.data_dir, "postgres"))
            self._r.database = await Database.connect(dsn, s)
            applied = await run_migrations(self._r.database.pool, logger=log)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
            self._r.coordinator = self._make_coordinator()
            await self._r.coordinator.start()
            self._r.blobs = make_blob_store(s)
            await self._start_servers()
        except BaseException:
            await self.stop()
            raise
        log.info("obscura listening on %s:%s (management %s:%s), database %s, coordination %s, storage %s",
                 s.server_host, self.port, s.server_host, self.mgmt_port,
                 "embedded" if s.embedded_database else "external",
                 "redis" if s.pubsub_url else "in-process", s.storage_kind)

    def _make_coordinator(self) -> Coordinator:
        if self.settings.pubsub_url:
            from obscura.coord.redis import RedisCoordinator
            return RedisCoordinator(self.settings, self.settings.pubsub_url)
        from obscura.coord.memory import MemoryCoordinator
        return MemoryCoordinator(self.settings)

    def _build_routes(self, router: Router) -> None:
        """Services are built here from the backends, and their REST routes registered.

        One section per area; only this module knows the concrete classes.
        """
        s = self.settings
        add_docs_routes(router)
        # -- accounts and sessions (issue 3) ------------------------------------------------------
        self.sessions = SessionIssuer(self.tokens, s.auth_refresh_token_ttl_days)
        self.accounts = AccountService(AccountRepo(self.database), self.passwords, self.sessions, self.telemetry)
        add_account_routes(router, self.accounts, self.tokens)
        # -- devices and keys (issue 3) -----------------------------------------------------------
        # -- messaging and gateway (issue 4) ------------------------------------------------------
        # -- attachments and backups (issue 5) ----------------------------------------------------
        # -- push tokens (issue 6) ----------------------------------------------------------------

    async def _start_servers(self) -> None:
        s = self.settings
        main = Router()
        self._build_routes(main)
        self.rate_limits = RateLimitHook(s, self.telemetry)
        self._r.main_server = HttpServer(main, settings=s, access_log=s.server_access_log,
                                         hooks=[self.rate_limits])
        self.port = await self._r.main_server.start(s.server_host, s.server_port)

        health = HealthService(
            database=lambda: self.database.check(s.health_db_timeout_ms / 1000),
            storage=lambda: self.blobs.check(),
            pubsub=lambda: self.coordinator.ping(),
            database_timeout_s=s.health_db_timeout_ms / 1000,
            storage_timeout_s=s.health_storage_timeout_ms / 1000,
            pubsub_timeout_s=s.health_pubsub_timeout_ms / 1000,
        )
        mgmt = Router()
        add_management_routes(mgmt, health)
        self._r.mgmt_server = HttpServer(mgmt, settings=s, access_log=False)
        self.mgmt_port = await self._r.mgmt_server.start(s.server_host, s.server_mgmt_port)

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, stop workers, close every backend.

        The whole sequence is bounded by OBSCURA_SERVER_SHUTDOWN_TIMEOUT_SECS for the draining
        steps; closing backends afterwards is quick and always attempted.
        """
        if self._stopped:
            return
        self._stopped = True
        budget = float(self.settings.server_shutdown_timeout_secs)
        r = self._r
        servers = [srv for srv in (r.main_server, r.mgmt_server) if srv is not None]
        if servers:
            await asyncio.gather(*(srv.shutdown(budget) for srv in servers), return_exceptions=True)
        for task in r.workers:
            task.cancel()
        if r.workers:
            await asyncio.wait(r.workers, timeout=budget)
        for name, closer in (("blob store", r.blobs), ("coordinator", r.coordinator), ("database", r.database)):
            if closer is None:
                continue
            try:
                await asyncio.wait_for(closer.close(), budget)
            except Exception:  # noqa: BLE001 - keep closing the rest
                log.exception("closing the %s failed", name)
        if r.embedded_pg is not None:
            try:
                await r.embedded_pg.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping the embedded PostgreSQL failed")
        log.info("obscura stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    async def serve_forever(self) -> None:
        await self._stopping.wait()


async def _main(settings: Settings) -> int:
    app = App(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.start()
    try:
        await app.serve_forever()
        log.info("shutting down")
    finally:
        await app.stop()
    return 0


def run(settings: Settings) -> int:
    """Run a node until SIGTERM or SIGINT; the exit status is 0 after a clean shutdown."""
    import uvloop

    return uvloop.run(_main(settings))
