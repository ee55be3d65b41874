"""Device provisioning (atomically capped), listing, rename, delete with hooks, existence checks (spec §2.6-2.7)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from obscura._speedups import uuid7
from obscura.config import Settings
from obscura.coord.base import Coordinator, Event
from obscura.domain.devices import Device
from obscura.domain.keys import KeyUpload
from obscura.errors import Forbidden, NotFound, Unauthorized
from obscura.services.keys import KeyService
from obscura.services.accounts import SessionIssuer as AccountSessions
from obscura.services.tokens import TokenService
from obscura.telemetry import Telemetry, traced

__all__ = ["DeviceService", "DeviceRepo", "DeviceSessionIssuer", "DeletedHook", "disconnect_on_delete",
           "RefreshTokenSessions"]

log = logging.getLogger("obscura.services.devices")

Txn = Any
DeletedHook = Callable[[uuid.UUID, uuid.UUID], Awaitable[None]]  # (user_id, device_id), after commit

EXISTS_CACHE_TTL_S = 2.0
EXISTS_CACHE_MAX = 100_000
HOOK_TIMEOUT_S = 10.0


class DeviceRepo(Protocol):
    def transaction(self) -> Any: ...
    async def lock_user_txn(self, txn: Txn, user_id: uuid.UUID) -> bool: ...
    async def count_devices_txn(self, txn: Txn, user_id: uuid.UUID) -> int: ...
    async def insert_device_txn(self, txn: Txn, device_id: uuid.UUID, user_id: uuid.UUID, name: str | None) -> None: ...
    async def list_devices(self, user_id: uuid.UUID) -> list[Device]: ...
    async def get_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> Device | None: ...
    async def rename_device(self, user_id: uuid.UUID, device_id: uuid.UUID, name: str | None) -> Device | None: ...
    async def delete_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> bool: ...
    async def device_exists(self, device_id: uuid.UUID) -> bool: ...


class DeviceSessionIssuer(Protocol):
    async def issue_in_txn(self, txn: Txn, user_id: uuid.UUID, device_id: uuid.UUID | None) -> dict[str, Any]: ...


class RefreshTokenSessions:
    """Sessions minted by the accounts' issuer, their refresh-token row written in the caller's
    transaction (spec §2.6: the device, its keys and its session commit together)."""

    def __init__(self, repo: Any, issuer: AccountSessions) -> None:
        self._repo = repo
        self._issuer = issuer

    async def issue_in_txn(self, txn: Txn, user_id: uuid.UUID, device_id: uuid.UUID | None) -> dict[str, Any]:
        session = self._issuer.new(user_id, device_id)
        await self._repo.insert_refresh_token_txn(txn, session.refresh_hash, user_id, device_id,
                                                  self._issuer.refresh_ttl_days)
        return session.as_json()


def disconnect_on_delete(coordinator: Coordinator) -> DeletedHook:
    """Hook: close the deleted device's live sockets on every node (decisions §4.5)."""
    async def disconnect(user_id: uuid.UUID, device_id: uuid.UUID) -> None:
        await coordinator.publish(device_id, Event.DISCONNECT)
    return disconnect


class DeviceService:
    def __init__(self, repo: DeviceRepo, keys: KeyService, sessions: DeviceSessionIssuer, tokens: TokenService,
                 telemetry: Telemetry, settings: Settings, *, on_deleted: list[DeletedHook] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._telemetry = telemetry  # for @traced
        self._repo = repo
        self._keys = keys
        self._sessions = sessions
        self._tokens = tokens
        self._max_devices = settings.auth_max_devices_per_user
        self._clock = clock
        self.on_deleted: list[DeletedHook] = list(on_deleted or [])
        self._created = telemetry.counter("obscura_devices_created_total", "devices provisioned")
        self._deleted = telemetry.counter("obscura_devices_deleted_total", "devices deleted")
        self._known: dict[uuid.UUID, float] = {}  # device -> positive-cache expiry (monotonic)
        self._gone: dict[uuid.UUID, float] = {}  # devices deleted here recently -> expiry

    @traced("devices.create_device")
    async def create_device(self, user_id: uuid.UUID, name: str | None, upload: KeyUpload) -> dict[str, Any]:
        """Device, keys and a device-scoped session in one transaction; the AuthResponse fields.

        The users row lock makes count-then-insert atomic, so concurrent creations never
        exceed OBSCURA_AUTH_MAX_DEVICES_PER_USER (decisions §4.4; upstream can overshoot).
        """
        device_id = uuid7()
        async with self._repo.transaction() as txn:
            if not await self._repo.lock_user_txn(txn, user_id):
                raise Unauthorized()  # the token's account no longer exists
            if await self._repo.count_devices_txn(txn, user_id) >= self._max_devices:
                raise Forbidden(f"Device limit reached. Maximum allowed is {self._max_devices}.")
            await self._repo.insert_device_txn(txn, device_id, user_id, name)
            # With no stored key this is the takeover branch, minus wipe and Disconnect (spec §4.4).
            await self._keys.upload_txn(txn, device_id, upload)
            auth = await self._sessions.issue_in_txn(txn, user_id, device_id)
        self._created.add(1)
        return auth

    @traced("devices.list_devices")
    async def list_devices(self, user_id: uuid.UUID) -> list[Device]:
        return await self._repo.list_devices(user_id)

    @traced("devices.get_device")
    async def get_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> Device:
        device = await self._repo.get_device(user_id, device_id)
        if device is None:
            raise NotFound()  # also for another account's device
        return device

    @traced("devices.rename_device")
    async def rename_device(self, user_id: uuid.UUID, device_id: uuid.UUID, name: str | None) -> Device:
        device = await self._repo.rename_device(user_id, device_id, name)
        if device is None:
            raise NotFound()
        return device

    @traced("devices.delete_device")
    async def delete_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Delete (FKs cascade keys, inbox, sent-pending messages, push token, backup row, refresh
        tokens: spec §2.7), then forget it locally and run the after-commit hooks."""
        if not await self._repo.delete_device(user_id, device_id):
            raise NotFound()
        self._deleted.add(1)
        self._forget(device_id)
        for hook in self.on_deleted:
            try:
                async with asyncio.timeout(HOOK_TIMEOUT_S):
                    await hook(user_id, device_id)
            except Exception:  # noqa: BLE001 - the delete is committed; other hooks still run
                log.warning("device-deleted hook %s failed for device %s",
                            getattr(hook, "__qualname__", hook), device_id, exc_info=True)

    # -- existence, for the auth path (decisions §4.6) --------------------------------------------
    async def exists(self, device_id: uuid.UUID) -> bool:
        """Whether the device still exists. Positive answers are cached for a couple of seconds;
        a delete on this node evicts at once (other nodes may answer yes for up to the TTL)."""
        now = self._clock()
        expiry = self._known.get(device_id)
        if expiry is not None and expiry > now:
            return True
        found = await self._repo.device_exists(device_id)
        gone_until = self._gone.get(device_id)
        if gone_until is not None and gone_until > self._clock():
            return False  # deleted while we were asking: do not cache a stale yes
        if found:
            if len(self._known) >= EXISTS_CACHE_MAX:
                self._sweep(now)
            self._known[device_id] = self._clock() + EXISTS_CACHE_TTL_S
        return found

    def _forget(self, device_id: uuid.UUID) -> None:
        self._known.pop(device_id, None)
        now = self._clock()
        if len(self._gone) >= EXISTS_CACHE_MAX:
            self._gone = {d: t for d, t in self._gone.items() if t > now}
        self._gone[device_id] = now + 2 * EXISTS_CACHE_TTL_S
        self._tokens.forget_device(device_id)

    def _sweep(self, now: float) -> None:
        self._known = {d: t for d, t in self._known.items() if t > now}
        while len(self._known) >= EXISTS_CACHE_MAX:  # all fresh: drop the oldest insertions
            self._known.pop(next(iter(self._known)))
