"""Key uploads with takeover semantics and prekey-bundle fetches (spec §2.8, §2.9, §4.3, §4.4)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from obscura.config import Settings
from obscura.coord.base import Coordinator, Event
from obscura.domain.devices import PreKeyBundle, StoredIdentity
from obscura.domain.keys import KeyUpload, OneTimePreKey, SignedPreKey
from obscura.errors import BadRequest, NotFound, Unauthorized
from obscura.services.xeddsa import verify_signed_prekey
from obscura.telemetry import Telemetry, traced

__all__ = ["KeyService", "KeyRepo"]

log = logging.getLogger("obscura.services.keys")

COORDINATION_TIMEOUT_S = 5.0
Txn = Any  # an open transaction handed out by a repository; opaque to services


class KeyRepo(Protocol):
    def transaction(self) -> Any: ...
    async def lock_identity_txn(self, txn: Txn, device_id: uuid.UUID) -> tuple[bool, StoredIdentity | None]: ...
    async def max_signed_prekey_id_txn(self, txn: Txn, device_id: uuid.UUID) -> int | None: ...
    async def count_one_time_prekeys_txn(self, txn: Txn, device_id: uuid.UUID) -> int: ...
    async def wipe_prekeys_txn(self, txn: Txn, device_id: uuid.UUID) -> None: ...
    async def upsert_identity_txn(self, txn: Txn, device_id: uuid.UUID, key: bytes, registration_id: int) -> None: ...
    async def prune_oldest_one_time_prekeys_txn(self, txn: Txn, device_id: uuid.UUID, count: int) -> None: ...
    async def upsert_signed_prekey_txn(self, txn: Txn, device_id: uuid.UUID, spk: SignedPreKey) -> None: ...
    async def delete_signed_prekeys_below_txn(self, txn: Txn, device_id: uuid.UUID, key_id: int) -> None: ...
    async def insert_one_time_prekeys_txn(self, txn: Txn, device_id: uuid.UUID,
                                          keys: tuple[OneTimePreKey, ...]) -> None: ...
    async def wipe_inbox_txn(self, txn: Txn, device_id: uuid.UUID) -> None: ...
    async def claim_bundles(self, user_id: uuid.UUID) -> list[tuple[PreKeyBundle, int]]: ...
    async def one_time_prekey_count(self, device_id: uuid.UUID) -> int | None: ...


class KeyService:
    def __init__(self, repo: KeyRepo, coordinator: Coordinator, telemetry: Telemetry, settings: Settings) -> None:
        self._telemetry = telemetry  # for @traced
        self._repo = repo
        self._coordinator = coordinator
        self._max_prekeys = settings.pre_keys_max
        self._threshold = settings.pre_key_refill_threshold
        self._push_delay_s = settings.notifications_push_delay_secs
        self._takeovers = telemetry.counter("obscura_key_takeovers_total",
                                            "identity-key takeovers (REST upload path)")
        self._low = telemetry.counter("obscura_prekey_threshold_reached_total",
                                      "devices found below the one-time prekey refill threshold")

    # -- POST /v1/devices/keys -------------------------------------------------------------------
    @traced("keys.upload_keys")
    async def upload_keys(self, device_id: uuid.UUID, upload: KeyUpload) -> bool:
        """Refill or take over the device's keys in one transaction; True on a takeover.

        A takeover also wipes the inbox, and after commit every session of the device on every
        node is told to disconnect (spec §4.4 step 10).
        """
        async with self._repo.transaction() as txn:
            takeover = await self.upload_txn(txn, device_id, upload)
            if takeover:
                await self._repo.wipe_inbox_txn(txn, device_id)
        if takeover:
            self._takeovers.add(1)
            await self._publish([(device_id, Event.DISCONNECT)])
        return takeover

    async def upload_txn(self, txn: Txn, device_id: uuid.UUID, upload: KeyUpload) -> bool:
        """Steps 1-9 of spec §4.4 inside ``txn``; True if this is a takeover.

        Device creation runs this too: with no stored key it takes the takeover branch, and the
        caller neither wipes an inbox nor publishes anything.
        """
        exists, stored = await self._repo.lock_identity_txn(txn, device_id)
        if not exists:
            raise Unauthorized()  # the token's device was deleted (decisions §4.6)
        if upload.identity_key is not None:
            takeover = stored is None or stored.identity_key != upload.identity_key
            identity_key = upload.identity_key
        else:
            if stored is None:
                raise BadRequest("Identity key missing")
            # A registrationId sent without identityKey is ignored (spec §13 item 21).
            takeover, identity_key = False, stored.identity_key
        spk = upload.signed_pre_key
        if not verify_signed_prekey(identity_key, spk.public_key, spk.signature):
            raise BadRequest("Invalid signature")
        if not takeover:
            current = await self._repo.max_signed_prekey_id_txn(txn, device_id)
            if current is not None and spk.key_id <= current:
                raise BadRequest(f"Signed Pre-Key ID {spk.key_id} must be greater than current ID {current}")
        new_count = len(upload.one_time_pre_keys)
        if new_count > self._max_prekeys:
            raise BadRequest(f"Batch too large. Limit is {self._max_prekeys}")
        if takeover:
            assert upload.registration_id is not None  # the API requires it with identityKey
            await self._repo.wipe_prekeys_txn(txn, device_id)
            await self._repo.upsert_identity_txn(txn, device_id, identity_key, upload.registration_id)
        else:
            existing = await self._repo.count_one_time_prekeys_txn(txn, device_id)
            excess = existing + new_count - self._max_prekeys
            if excess > 0:
                await self._repo.prune_oldest_one_time_prekeys_txn(txn, device_id, excess)
        await self._repo.upsert_signed_prekey_txn(txn, device_id, spk)
        if not takeover:
            await self._repo.delete_signed_prekeys_below_txn(txn, device_id, spk.key_id)
        await self._repo.insert_one_time_prekeys_txn(txn, device_id, upload.one_time_pre_keys)
        return takeover

    # -- GET /v1/users/{userId} -------------------------------------------------------------------
    @traced("keys.fetch_bundles")
    async def fetch_bundles(self, user_id: uuid.UUID) -> list[PreKeyBundle]:
        """One bundle per keyed device of the user, each consuming one one-time prekey; 404 if none.

        After commit, devices left below the refill threshold get PreKeyLow and a delayed push
        (spec §2.9); a device with none left triggers this on every fetch, as upstream.
        """
        claimed = await self._repo.claim_bundles(user_id)
        if not claimed:
            raise NotFound()
        low = [bundle.device_id for bundle, remaining in claimed if remaining < self._threshold]
        if low:
            self._low.add(len(low))
            await self._publish([(device_id, Event.PREKEY_LOW) for device_id in low])
            await self._schedule_push(low)
        return [bundle for bundle, _ in claimed]

    async def one_time_prekey_count(self, device_id: uuid.UUID) -> int | None:
        """None when the device does not exist."""
        return await self._repo.one_time_prekey_count(device_id)

    # -- after-commit notifications: best effort, the database is the truth (decisions §4.11) -----
    async def _publish(self, items: list[tuple[uuid.UUID, Event]]) -> None:
        try:
            async with asyncio.timeout(COORDINATION_TIMEOUT_S):
                await self._coordinator.publish_many(items)
        except Exception:  # noqa: BLE001 - the change is committed; a lost wake-up costs latency only
            log.warning("publishing %d key event(s) failed", len(items), exc_info=True)

    async def _schedule_push(self, device_ids: list[uuid.UUID]) -> None:
        try:
            async with asyncio.timeout(COORDINATION_TIMEOUT_S):
                await self._coordinator.schedule_push(device_ids, self._push_delay_s)
        except Exception:  # noqa: BLE001
            log.warning("scheduling %d prekey push job(s) failed", len(device_ids), exc_info=True)
