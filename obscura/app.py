"""The only module that wires concrete classes together: start-up, serving and shutdown of a node."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

from obscura.api.accounts import add_account_routes
from obscura.api.attachments import add_attachment_routes
from obscura.api.backups import add_backup_routes
from obscura.api.common import Authenticator
from obscura.api.devices import add_device_routes
from obscura.api.keys import add_key_routes
from obscura.api.push_tokens import add_push_token_routes
from obscura.api.docs import add_docs_routes
from obscura.api.messages import add_message_routes
from obscura.api.health import add_management_routes
from obscura.api.ratelimit import RateLimitHook
from obscura.blobs import BlobStore, make_blob_store
from obscura.config import Settings
from obscura.coord.base import Coordinator
from obscura.gateway import Gateway, TicketService
from obscura.gcpolicy import GcPolicy
from obscura.http.gateway import GatewayHandoff
from obscura.http.router import Router
from obscura.push.factory import make_push_provider
from obscura.http.server import HttpServer
from obscura.services.accounts import AccountService, SessionIssuer
from obscura.services.attachments import AttachmentService
from obscura.services.backups import BackupService
from obscura.services.devices import DeviceService, RefreshTokenSessions, disconnect_on_delete
from obscura.services.health import HealthService
from obscura.services.keys import KeyService
from obscura.services.messages import MessageService
from obscura.services.push_tokens import PushTokenService
from obscura.services.passwords import PasswordService
from obscura.services.tokens import TokenService
from obscura.store.postgres.pool import Database
from obscura.store.embedded import EmbeddedPostgres
from obscura.store.migrate import run_migrations
from obscura.store.postgres.accounts import AccountRepo
from obscura.store.postgres.attachments import AttachmentRepo
from obscura.store.postgres.backups import BackupRepo
from obscura.store.postgres.devices import PgDeviceRepo
from obscura.store.postgres.keys import PgKeyRepo
from obscura.store.postgres.messages import MessageRepo
from obscura.store.postgres.push_tokens import PgPushTokenRepo
from obscura.telemetry import Telemetry
from obscura.workers.attachment_cleanup import AttachmentCleanupWorker
from obscura.workers.backup_cleanup import BackupCleanupWorker
from obscura.workers.message_cleanup import MessageCleanup, RefreshTokenCleanup
from obscura.workers.push import PushWorker

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

    def __init__(self, settings: Settings, *, telemetry: Telemetry | None = None, reuse_port: bool = False,
                 mgmt_path: str | None = None) -> None:
        self.settings = settings
        self.reuse_port = reuse_port  # SO_REUSEPORT: one of `serve --workers N` processes (obscura/supervisor.py)
        # A worker's management routes listen on this Unix socket; its supervisor serves the
        # management port and asks every worker (obscura/supervisor.py).
        self.mgmt_path = mgmt_path
        self.port: int | None = None
        self.mgmt_port: int | None = None
        self._r = _Resources()
        self._stopping = asyncio.Event()
        self._stopped = False
        self.telemetry = telemetry if telemetry is not None else Telemetry.from_settings(settings)
        self.gateway: Gateway | None = None
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
            self.telemetry.start()  # spec §1.3 step 2; builds nothing unless configured (issue 7)
            dsn = s.db_url
            if dsn is None:
                self._r.embedded_pg = EmbeddedPostgres(s.data_dir)
                dsn = await self._r.embedded_pg.start()
                log.info("embedded PostgreSQL ready in %s", os.path.join(s.data_dir, "postgres"))
            self._r.database = await Database.connect(dsn, s, query_logger=self.telemetry.query_logger())
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
        log.info("obscura listening on %s:%s (management %s), database %s, coordination %s, storage %s",
                 s.server_host, self.port, self.mgmt_path or f"{s.server_host}:{self.mgmt_port}",
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
        # Device-scoped tokens are checked against live devices once DeviceService exists (below).
        self.auth = Authenticator(self.tokens)
        self.sessions = SessionIssuer(self.tokens, s.auth_refresh_token_ttl_days)
        self.accounts = AccountService(AccountRepo(self.database), self.passwords, self.sessions, self.telemetry)
        add_account_routes(router, self.accounts, self.auth)
        # -- devices and keys (issue 3) -----------------------------------------------------------
        device_repo = PgDeviceRepo(self.database)
        self.keys = KeyService(PgKeyRepo(self.database), self.coordinator, self.telemetry, s)
        self.devices = DeviceService(device_repo, self.keys, RefreshTokenSessions(device_repo, self.sessions),
                                     self.tokens, self.telemetry, s,
                                     on_deleted=[disconnect_on_delete(self.coordinator)])
        self.auth.device_exists = self.devices.exists  # decisions §4.6
        add_device_routes(router, self.devices, self.auth)
        add_key_routes(router, self.keys, self.auth)
        # -- messaging and gateway (issue 4) ------------------------------------------------------
        self._message_repo = MessageRepo(self.database)
        self.messages = MessageService(
            self._message_repo, self.coordinator, self.telemetry, ttl_days=s.ttl_days,
            batch_limit=s.messaging_send_batch_limit, idempotency_ttl_s=s.messaging_idempotency_ttl_secs,
            push_delay_s=s.notifications_push_delay_secs)
        self.tickets = TicketService(self.coordinator, s.ws_ticket_ttl_secs)
        self.gateway = Gateway(s, self.coordinator, self.messages, self.tickets,
                               self.keys.one_time_prekey_count, self.telemetry)
        add_message_routes(router, self.messages, self.tickets, self.auth)
        self.message_cleanup = MessageCleanup(self._message_repo, self.telemetry, inbox_max=s.messaging_inbox_max_size,
                                              interval_s=s.messaging_cleanup_interval_secs)
        self._r.workers.append(self.message_cleanup.worker.start())
        if s.auth_refresh_token_cleanup_interval_secs > 0:  # 0 disables it (spec §7)
            self.refresh_cleanup = RefreshTokenCleanup(AccountRepo(self.database),
                                                       interval_s=s.auth_refresh_token_cleanup_interval_secs)
            self._r.workers.append(self.refresh_cleanup.worker.start())
        # -- attachments and backups (issue 5) ----------------------------------------------------
        self.attachments = AttachmentService(
            AttachmentRepo(self.database), self.blobs, self.telemetry, prefix=s.attachment_prefix,
            min_bytes=s.attachment_min_size_bytes, max_bytes=s.attachment_max_size_bytes, ttl_days=s.ttl_days)
        self.backups = BackupService(
            BackupRepo(self.database), self.blobs, self.telemetry, prefix=s.backup_prefix,
            min_bytes=s.backup_min_size_bytes, max_bytes=s.backup_max_size_bytes,
            stale_after_s=s.backup_stale_threshold_mins * 60.0)
        add_attachment_routes(router, self.attachments, self.auth, timeout_s=s.attachment_timeout_secs)
        add_backup_routes(router, self.backups, self.auth, timeout_s=s.backup_timeout_secs)
        self.devices.on_deleted.append(self.backups.delete_device_backups)  # decisions §4.5
        self.attachment_cleanup = AttachmentCleanupWorker(
            self.attachments, self.telemetry, interval_s=s.attachment_cleanup_interval_secs,
            batch_size=s.attachment_cleanup_batch_size)
        self.backup_cleanup = BackupCleanupWorker(self.backups, self.telemetry,
                                                  interval_s=s.backup_cleanup_interval_secs)
        self._r.workers += [self.attachment_cleanup.start(), self.backup_cleanup.start()]
        # -- push tokens (issue 6) ----------------------------------------------------------------
        self.push_tokens = PushTokenService(PgPushTokenRepo(self.database))
        add_push_token_routes(router, self.push_tokens, self.auth)
        self.push_worker = PushWorker.from_settings(s, self.coordinator, self.push_tokens,
                                                    make_push_provider(s), self.telemetry)
        self._r.workers.append(self.push_worker.start())  # owns (and closes) the provider

    async def _start_servers(self) -> None:
        s = self.settings
        main = Router()
        self._build_routes(main)
        self.rate_limits = RateLimitHook(s, self.telemetry)
        self._r.main_server = HttpServer(main, settings=s, access_log=s.server_access_log,
                                         hooks=[self.rate_limits], observer=self.telemetry.http_observer(),
                                         gateway=GatewayHandoff(self.gateway.authorize, settings=s))
        self.port = await self._r.main_server.start(s.server_host, s.server_port, reuse_port=self.reuse_port)

        health = HealthService(
            database=lambda: self.database.check(s.health_db_timeout_ms / 1000),
            storage=lambda: self.blobs.check(),
            pubsub=lambda: self.coordinator.ping(),
            database_timeout_s=s.health_db_timeout_ms / 1000,
            storage_timeout_s=s.health_storage_timeout_ms / 1000,
            pubsub_timeout_s=s.health_pubsub_timeout_ms / 1000,
            on_result=self._health_gauge(),
        )
        mgmt = Router()
        add_management_routes(mgmt, health)
        self._start_telemetry(mgmt)
        self._r.mgmt_server = HttpServer(mgmt, settings=s, access_log=False)
        if self.mgmt_path is not None:
            await self._r.mgmt_server.start_unix(self.mgmt_path)
        else:
            self.mgmt_port = await self._r.mgmt_server.start(s.server_host, s.server_mgmt_port)

    # -- telemetry (issue 7) ----------------------------------------------------------------------
    def _health_gauge(self):
        gauge = self.telemetry.gauge("obscura_health_status", "1 = ok, 0 = error, per readiness probe")
        return lambda component, ok: gauge.set(1 if ok else 0, {"component": component})

    def _start_telemetry(self, mgmt: Router) -> None:
        """Pool saturation gauges, the state poller and the optional /metrics; nothing when disabled."""
        t = self.telemetry
        if not t.enabled:
            return
        from obscura.api.metrics import add_metrics_routes
        from obscura.store.postgres.stats import StateRepo, pool_usage
        from obscura.workers.state_poller import StatePoller

        db = self.database
        for key, what in (("active", "in use"), ("idle", "idle"), ("max", "maximum")):
            t.observable_gauge(f"obscura_db_pool_{key}_connections", lambda key=key: [(pool_usage(db)[key], None)],
                               f"database pool connections {what}")
        interval_s = float(getattr(self.settings, "telemetry_state_poll_interval_secs", 300))
        self._r.workers.append(StatePoller(StateRepo(db).counts, t, interval_s).start())
        if t.config.prometheus:
            add_metrics_routes(mgmt, t)

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
        closing = [srv.shutdown(budget) for srv in servers]
        if self.gateway is not None:
            closing.append(self.gateway.shutdown(budget))  # 1001 "Server shutting down" (spec §1.3)
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)
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
        await self.telemetry.shutdown(float(getattr(self.settings, "telemetry_export_timeout_secs", 10)))

    def request_stop(self) -> None:
        self._stopping.set()

    async def serve_forever(self) -> None:
        await self._stopping.wait()


async def _main(settings: Settings, reuse_port: bool = False, mgmt_path: str | None = None) -> int:
    app = App(settings, reuse_port=reuse_port, mgmt_path=mgmt_path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.request_stop)
    await app.start()
    GcPolicy(app.telemetry).start(loop)  # sessions stay out of the collector's passes (obscura/gcpolicy.py)
    try:
        await app.serve_forever()
        log.info("shutting down")
    finally:
        await app.stop()
    return 0


def run(settings: Settings, *, reuse_port: bool = False, mgmt_path: str | None = None) -> int:
    """Run a node until SIGTERM or SIGINT; the exit status is 0 after a clean shutdown."""
    import uvloop

    return uvloop.run(_main(settings, reuse_port, mgmt_path))
