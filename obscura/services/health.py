"""Readiness: run the database, storage and pub/sub checks concurrently, each with its timeout (spec §2.15)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["HealthService", "ReadinessReport", "Check"]

log = logging.getLogger("obscura.health")

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    database: bool
    storage: bool
    pubsub: bool

    @property
    def ok(self) -> bool:
        return self.database and self.storage and self.pubsub

    def as_json(self) -> dict[str, str]:
        word = {True: "ok", False: "error"}
        return {"status": word[self.ok], "database": word[self.database],
                "storage": word[self.storage], "pubsub": word[self.pubsub]}


class HealthService:
    """Each check raises on failure; the failure text is logged (spec §2.15 strings), never returned."""

    def __init__(self, *, database: Check, storage: Check, pubsub: Check,
                 database_timeout_s: float, storage_timeout_s: float, pubsub_timeout_s: float,
                 on_result: Callable[[str, bool], None] | None = None) -> None:
        self._checks = (
            ("database", "Database", database, database_timeout_s),
            ("storage", "Storage", storage, storage_timeout_s),
            ("pubsub", "PubSub", pubsub, pubsub_timeout_s),
        )
        self._on_result = on_result

    async def readiness(self) -> ReadinessReport:
        results = await asyncio.gather(*(self._run(*c) for c in self._checks))
        return ReadinessReport(*results)

    async def _run(self, component: str, label: str, check: Check, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(check(), timeout_s)
            ok = True
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("%s connection timed out", label, extra={"component": component})
            ok = False
        except Exception as exc:  # noqa: BLE001 - any failure makes the component not ready
            detail = str(exc) or type(exc).__name__
            if not detail.startswith(label):
                detail = f"{label} connection failed: {detail}"
            log.warning("%s", detail, extra={"component": component})
            ok = False
        if self._on_result is not None:
            self._on_result(component, ok)
        return ok
