"""Encrypted backups: one slot per device with optimistic versions and reservation leases (spec §6.2)."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Protocol

from obscura.blobs import (
    Blob, BlobLengthMismatch, BlobNotFound, BlobStore, BlobTooLarge, BlobTooSmall, BlobUnavailable,
)
from obscura.domain.backups import UPLOADING, BackupReservation, BackupSlot, DeviceGone
from obscura.errors import (
    BadRequest, Conflict, InternalError, LengthRequired, NotFound, PayloadTooLarge, PreconditionFailed,
    Unauthorized,
)
from obscura.telemetry import Telemetry, traced

__all__ = ["BackupService", "BackupStore", "BackupObject", "expected_version"]

log = logging.getLogger("obscura.backups")

TOO_SMALL = "Backup too small"
_INT32 = re.compile(r"[+-]?[0-9]+")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_STEP_TIMEOUT_S = 30.0  # one blob delete or DB write on a cleanup path
_LIST_BATCH = 1000
_OBJECT = re.compile(r"(?P<device>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/v(?P<version>[0-9]+)")


class BackupStore(Protocol):
    async def get(self, device_id: uuid.UUID) -> BackupSlot | None: ...
    async def reserve(self, device_id: uuid.UUID, expected_version: int) -> BackupReservation | None:
        """Raises DeviceGone when the device no longer exists."""
    async def take_over(self, device_id: uuid.UUID, expected_version: int,
                        stale_after_s: float) -> BackupReservation | None: ...
    async def commit(self, r: BackupReservation) -> bool: ...
    async def release(self, r: BackupReservation) -> bool: ...
    async def stale_slots(self, stale_after_s: float, limit: int) -> list[BackupSlot]: ...
    async def claim_stale(self, slot: BackupSlot) -> BackupReservation | None: ...
    async def current_versions(self, device_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]: ...
    async def device_exists(self, device_id: uuid.UUID) -> bool: ...


@dataclass(frozen=True, slots=True)
class BackupObject:
    """What GET and HEAD answer with: the version, and the body (None for HEAD or a 304)."""

    version: int
    size: int
    blob: Blob | None = None


def _parse_int32(text: str) -> int | None:
    """Rust's ``str::parse::<i32>``: optional sign, ASCII digits, nothing else."""
    if not _INT32.fullmatch(text):
        return None
    value = int(text)
    return value if _INT32_MIN <= value <= _INT32_MAX else None


def expected_version(if_none_match: str | None, if_match: str | None) -> int:
    """The version an upload expects to replace (spec §6.2 step 1; the error strings are upstream's).

    ``If-None-Match`` wins when present and must be exactly ``*`` (no backup yet, version 0).
    """
    if if_none_match is not None:
        if if_none_match != "*":
            raise BadRequest("Invalid If-None-Match header")
        return 0
    if if_match is None:
        raise BadRequest("Missing If-Match or If-None-Match header")
    if not if_match.isascii():
        raise BadRequest("Invalid If-Match header")
    version = _parse_int32(if_match.strip('"'))
    if version is None:
        raise BadRequest("Invalid version in If-Match header")
    return version


class BackupService:
    """Uploads, downloads and cleans up the device backup slots and their versioned objects."""

    def __init__(self, repo: BackupStore, blobs: BlobStore, telemetry: Telemetry, *, prefix: str,
                 min_bytes: int, max_bytes: int, stale_after_s: float) -> None:
        self._telemetry = telemetry  # for @traced
        self._repo = repo
        self._blobs = blobs
        self._prefix = prefix
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.stale_after_s = stale_after_s
        self._bytes = telemetry.counter("obscura_backup_upload_bytes_total", "backup bytes stored", "By")
        self._sizes = telemetry.histogram("obscura_backup_upload_size_bytes", "backup sizes", "By")

    def key(self, device_id: uuid.UUID, version: int) -> str:
        return f"{self._prefix}{device_id}/v{version}"

    # -- upload ---------------------------------------------------------------------------------
    @traced("backups.upload")
    async def upload(self, device_id: uuid.UUID, if_none_match: str | None, if_match: str | None,
                     content_length: int | None, chunks: AsyncIterable[bytes]) -> int:
        """Store a new version of the device's backup and return it (spec §6.2 steps 1-10)."""
        expected = expected_version(if_none_match, if_match)
        if content_length is None:
            raise LengthRequired()
        if content_length < self.min_bytes:
            raise BadRequest(TOO_SMALL)
        if content_length > self.max_bytes:
            raise PayloadTooLarge()
        r = await self._reserve(device_id, expected)
        key = self.key(device_id, r.pending_version)
        try:
            size = await self._blobs.put_stream(key, chunks, min_bytes=self.min_bytes, max_bytes=self.max_bytes,
                                                content_length=content_length,
                                                content_type="application/octet-stream")
        except BaseException as exc:
            # Unlike upstream, give the slot back at once (decisions §4.8); put_stream left no object.
            await asyncio.shield(self._release(r))
            mapped = _upload_error(exc)
            if mapped is exc:
                raise
            raise mapped from None
        try:
            committed = await self._repo.commit(r)
        except BaseException:
            await asyncio.shield(self._abandon(r, key))
            raise
        if not committed:
            # Someone took the slot over (or the device was deleted) while we streamed. The object
            # under our key is theirs now if they got that far; only a vanished slot means it is ours.
            if await self._repo.get(device_id) is None:
                await asyncio.shield(self._delete_quietly(key))
            raise Conflict("Concurrent modification")
        if r.previous_version > 0:
            await asyncio.shield(self._delete_quietly(self.key(device_id, r.previous_version)))
        self._bytes.add(size)
        self._sizes.record(size)
        return r.pending_version

    async def _reserve(self, device_id: uuid.UUID, expected: int) -> BackupReservation:
        """Steps 4-6: reserve the slot, or explain why not (412, 409), or take over a stale upload."""
        try:
            r = await self._repo.reserve(device_id, expected)
        except DeviceGone:
            raise Unauthorized() from None  # a still-valid token of a deleted device (decisions §4.6)
        if r is not None:
            return r
        slot = await self._repo.get(device_id)
        if slot is None:
            raise Conflict("Concurrent modification")  # deleted between the two statements
        if slot.current_version != expected:
            raise PreconditionFailed()
        if slot.state == UPLOADING:
            # The staleness test runs in SQL against the database clock (one clock for every node).
            r = await self._repo.take_over(device_id, expected, self.stale_after_s)
            if r is None:
                raise Conflict("Upload already in progress")
            return r
        raise Conflict("Concurrent modification")

    async def _release(self, r: BackupReservation) -> None:
        try:
            async with asyncio.timeout(_STEP_TIMEOUT_S):
                await self._repo.release(r)
        except Exception as exc:  # noqa: BLE001 - the slot goes stale and is taken over or reset later
            log.warning("could not release a backup slot after a failed upload: %s", type(exc).__name__)

    async def _abandon(self, r: BackupReservation, key: str) -> None:
        """The object is stored but the commit failed: remove it while we still hold the slot."""
        await self._delete_quietly(key)
        await self._release(r)

    async def _delete_quietly(self, key: str) -> None:
        try:
            async with asyncio.timeout(_STEP_TIMEOUT_S):
                await self._blobs.delete(key)
        except Exception as exc:  # noqa: BLE001 - logged; the next upload of that version overwrites it
            log.warning("could not delete backup object: %s", type(exc).__name__)

    # -- download -------------------------------------------------------------------------------
    async def current_version(self, device_id: uuid.UUID) -> int | None:
        slot = await self._repo.get(device_id)
        return None if slot is None else slot.current_version

    @traced("backups.fetch")
    async def fetch(self, device_id: uuid.UUID, if_none_match: str | None, *, body: bool) -> BackupObject:
        """GET (``body=True``) or HEAD. A ``BackupObject`` without blob and size -1 means 304."""
        slot = await self._repo.get(device_id)
        if body and if_none_match is not None and slot is not None:
            tag = _parse_int32(if_none_match.strip('"'))
            if tag is not None and tag == slot.current_version:
                return BackupObject(slot.current_version, -1)  # 304 without touching storage
        if slot is None or slot.current_version == 0:
            raise NotFound()
        key = self.key(device_id, slot.current_version)
        try:
            if not body:
                meta = await self._blobs.head(key)
                if meta is None:
                    raise NotFound()  # an orphaned row (spec §6.2)
                return BackupObject(slot.current_version, meta.size)
            blob = await self._blobs.get_stream(key)
        except BlobNotFound:
            raise NotFound() from None
        except BlobUnavailable as exc:
            log.error("backup download failed: %s", exc)
            raise InternalError() from None
        return BackupObject(slot.current_version, blob.size, blob)

    # -- deletion and cleanup -------------------------------------------------------------------
    async def delete_device_backups(self, user_id: uuid.UUID, device_id: uuid.UUID) -> None:
        """Delete every backup object of a deleted device (decisions §4.5; a DeviceService
        ``on_deleted`` hook). The FK cascade already dropped the slot row, so the objects are
        found by their key prefix. Does nothing while the device still exists."""
        if await self._repo.device_exists(device_id):
            log.warning("not deleting the backups of device %s: it still exists", device_id)
            return
        async with asyncio.timeout(_STEP_TIMEOUT_S):
            while keys := await self._blobs.list_keys(f"{self._prefix}{device_id}/", limit=_LIST_BATCH):
                await self._blobs.delete_many(keys)
                if len(keys) < _LIST_BATCH:
                    break

    async def sweep_orphans(self, after: str | None, limit: int) -> tuple[str | None, int]:
        """One step of the sweep for objects nothing will delete (decisions §4.5): the first
        ``limit`` backup keys after ``after``. Deletes the objects of devices that have no slot
        any more (deleted while a node was down, or storage failed during the delete hook) and
        versions older than their slot's current one (a crash between an upload's commit and the
        delete of the version it replaced). Pending and newer objects stay: an upload may be
        writing that very key (the stale-slot cleanup handles abandoned ones). The keys are
        listed before the slots are read, and an object is only ever written after its slot
        row exists, so a listed object without a row is one whose device is gone.

        Returns (the key the next step starts after, None once the last key was seen; objects
        deleted). Raises ``BlobUnavailable``.
        """
        # The folder the prefix names ("backups/" itself; the store's root for a prefix like "bk-").
        keys = await self._blobs.list_keys(self._prefix[:self._prefix.rfind("/") + 1], limit=limit, after=after)
        objects: dict[str, tuple[uuid.UUID, int]] = {}
        for key in keys:
            found = _OBJECT.fullmatch(key, len(self._prefix)) if key.startswith(self._prefix) else None
            if found is not None:  # anything else in the folder is not ours to judge
                objects[key] = (uuid.UUID(found["device"]), int(found["version"]))
        current = await self._repo.current_versions(list({device for device, _ in objects.values()}))
        doomed = [key for key, (device, version) in objects.items()
                  if device not in current or version < current[device]]
        if doomed:
            async with asyncio.timeout(_STEP_TIMEOUT_S):
                await self._blobs.delete_many(doomed)
            log.info("backup sweep deleted %d orphaned objects", len(doomed))
        return (keys[-1] if len(keys) == limit else None), len(doomed)

    async def reset_stale_batch(self, limit: int) -> tuple[int, int, int]:
        """One cleanup batch of stale ``UPLOADING`` slots; returns (selected, reset, failed).

        Each slot is first claimed (its lease renewed) so no upload can take it over while its
        pending object is deleted, then released.
        """
        slots = await self._repo.stale_slots(self.stale_after_s, limit)
        reset = failed = 0
        for slot in slots:
            r = await self._repo.claim_stale(slot)
            if r is None:
                continue  # taken over or finished meanwhile
            if slot.pending_version:
                try:
                    async with asyncio.timeout(_STEP_TIMEOUT_S):
                        await self._blobs.delete(self.key(slot.device_id, slot.pending_version))
                except (BlobUnavailable, TimeoutError):
                    failed += 1  # still released: the next upload writes that same key again
            if await self._repo.release(r):
                reset += 1
        return len(slots), reset, failed


def _upload_error(exc: BaseException) -> BaseException:
    if isinstance(exc, BlobTooLarge):
        return PayloadTooLarge()
    if isinstance(exc, BlobTooSmall):
        return BadRequest(TOO_SMALL)
    if isinstance(exc, BlobLengthMismatch):
        return BadRequest("Body does not match Content-Length")
    if isinstance(exc, BlobUnavailable):
        log.error("backup upload failed: %s", exc)
        return InternalError()
    return exc
