"""The front-door HTTP/1.1 server's lifecycle: listen, track connections, drain, shut down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from obscura.config import Settings
from obscura.http.gateway import GatewayHandoff
from obscura.http.protocol import HttpConnection
from obscura.http.request import Request
from obscura.http.response import Response, StreamResponse
from obscura.http.router import Router

__all__ = ["HttpServer", "Hook", "RequestObserver"]

# Runs before the handler (rate limits, auth). Returning a response short-circuits the request.
Hook = Callable[[Request], Awaitable["Response | StreamResponse | None"]]


class RequestObserver(Protocol):
    """Sees every parsed request (obscura.telemetry.HttpObserver): start, unexpected failure, end."""

    def on_request_start(self, req: Request) -> Any: ...
    def on_exception(self, req: Request, exc: BaseException) -> None: ...
    def on_request_end(self, req: Request, state: Any, status: int) -> None: ...


class HttpServer:
    """REST and the gateway upgrade on one port (decisions.md §2).

    Lifecycle: ``port = await start(host, port)`` ... ``await shutdown(timeout_s)``.
    """

    def __init__(self, router: Router, *, settings: Settings, gateway: GatewayHandoff | None = None,
                 access_log: bool = True, logger: logging.Logger | None = None,
                 hooks: Iterable[Hook] = (), observer: RequestObserver | None = None) -> None:
        self.router = router
        # Telemetry's request hook (RED metrics, request span); None keeps the hot path free of it.
        self.observer = observer
        self.settings = settings
        self.gateway = gateway
        self.hooks: list[Hook] = list(hooks)
        self.logger = logger or logging.getLogger("obscura.http")
        self._access = logging.getLogger("obscura.access") if access_log and settings.server_access_log else None
        self._conns: set[HttpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._drained: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.port = 0

    @property
    def connections(self) -> int:
        """Open HTTP connections (a socket handed to the gateway no longer counts)."""
        return len(self._conns)

    def add_hook(self, hook: Hook) -> None:
        self.hooks.append(hook)

    async def start(self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False,
                    backlog: int = 1024) -> int:
        """Listen (SO_REUSEADDR always, SO_REUSEPORT on request); returns the bound port (0 = any)."""
        self.loop = asyncio.get_running_loop()
        host = self.settings.server_host if host is None else host
        port = self.settings.server_port if port is None else port
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True,
            reuse_port=reuse_port or None, backlog=backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def start_unix(self, path: str) -> None:
        """Listen on a Unix socket instead (a `serve --workers` worker's private management
        listener, reached only by its supervisor: obscura/supervisor.py)."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_unix_server(lambda: HttpConnection(self), path)

    async def shutdown(self, timeout_s: float | None = None) -> None:
        """Stop accepting; let in-flight requests finish within ``timeout_s``; then force-close."""
        timeout_s = float(self.settings.server_shutdown_timeout_secs) if timeout_s is None else timeout_s
        if self._server is not None:
            self._server.close()
        self._drained = asyncio.Event()
        for conn in list(self._conns):
            conn.begin_shutdown()
        if self._conns:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout_s)
            except TimeoutError:
                self.logger.warning("shutdown: force-closing %d connection(s)", len(self._conns))
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass
            self._server = None

    # -- used by HttpConnection -----------------------------------------------------------------
    def _opened(self, conn: HttpConnection) -> None:
        self._conns.add(conn)
        if self._drained is not None:  # accepted in the instant before close(): drain it too
            conn.begin_shutdown()

    def _closed(self, conn: HttpConnection) -> None:
        self._conns.discard(conn)
        if not self._conns and self._drained is not None:
            self._drained.set()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.logger.error("HTTP connection task failed", exc_info=task.exception())

    def log_access(self, method: str, route: str | None, status: int, start: float, request_id: str) -> None:
        """One line per request (``start`` from time.perf_counter); never the client address, query string or headers (style §11)."""
        access = self._access
        if access is not None and access.isEnabledFor(logging.INFO):
            access.info("%s %s %d %.1fms %s", method, route or "unmatched", status,
                        (time.perf_counter() - start) * 1000.0, request_id)
