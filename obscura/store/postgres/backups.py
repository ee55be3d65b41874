"""The per-device backup slot in PostgreSQL: optimistic versions and reservation leases (spec §6.2, §9)."""

from __future__ import annotations

import uuid

import asyncpg

from obscura.domain.backups import BackupReservation, BackupSlot, DeviceGone
from obscura.store.postgres.pool import Database

__all__ = ["BackupRepo"]


_COLUMNS = "device_id, current_version, pending_version, state, pending_at"
_RESERVED = "device_id, current_version, pending_version, pending_at"

# Steps 5 and 6 of spec §6.2. Every later write is conditional on the reservation it holds
# (pending_version and pending_at), never on the state alone.
_RESERVE = f"""
UPDATE backups SET state = 'UPLOADING', pending_version = current_version + 1, pending_at = now()
WHERE device_id = $1 AND current_version = $2 AND state = 'ACTIVE'
RETURNING {_RESERVED}
"""
_TAKE_OVER = f"""
UPDATE backups SET pending_version = current_version + 1, pending_at = now()
WHERE device_id = $1 AND current_version = $2 AND state = 'UPLOADING'
  AND pending_at < now() - make_interval(secs => $3)
RETURNING {_RESERVED}
"""
_COMMIT = """
UPDATE backups SET current_version = pending_version, pending_version = NULL, pending_at = NULL,
                   state = 'ACTIVE', updated_at = now()
WHERE device_id = $1 AND pending_version = $2 AND pending_at = $3 AND state = 'UPLOADING'
"""
_RELEASE = """
UPDATE backups SET pending_version = NULL, pending_at = NULL, state = 'ACTIVE'
WHERE device_id = $1 AND pending_at = $2 AND state = 'UPLOADING'
"""
_CLAIM_STALE = f"""
UPDATE backups SET pending_at = now()
WHERE device_id = $1 AND state = 'UPLOADING' AND pending_at = $2
  AND pending_version IS NOT DISTINCT FROM $3
RETURNING {_RESERVED}
"""


def _reservation(row: asyncpg.Record | None) -> BackupReservation | None:
    if row is None:
        return None
    return BackupReservation(row["device_id"], row["current_version"], row["pending_version"] or 0,
                             row["pending_at"])


def _slot(row: asyncpg.Record | None) -> BackupSlot | None:
    if row is None:
        return None
    return BackupSlot(row["device_id"], row["current_version"], row["pending_version"], row["state"],
                      row["pending_at"])


def _affected(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])


class BackupRepo:
    """Use cases of the backup service and its cleanup worker; each is one statement."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, device_id: uuid.UUID) -> BackupSlot | None:
        async with self._db.acquire() as conn:
            return _slot(await conn.fetchrow(f"SELECT {_COLUMNS} FROM backups WHERE device_id = $1", device_id))

    async def reserve(self, device_id: uuid.UUID, expected_version: int) -> BackupReservation | None:
        """Create the slot if missing (version 0), then reserve version ``expected + 1`` if the slot
        is idle at ``expected_version``. DeviceGone when the device was deleted."""
        async with self._db.acquire() as conn:
            try:
                await conn.execute("INSERT INTO backups (device_id) VALUES ($1) ON CONFLICT (device_id) DO NOTHING",
                                   device_id)
            except asyncpg.ForeignKeyViolationError:
                raise DeviceGone(str(device_id)) from None
            return _reservation(await conn.fetchrow(_RESERVE, device_id, expected_version))

    async def take_over(self, device_id: uuid.UUID, expected_version: int,
                        stale_after_s: float) -> BackupReservation | None:
        """Force a fresh reservation of an upload older than ``stale_after_s`` (spec §6.2 step 6)."""
        async with self._db.acquire() as conn:
            return _reservation(await conn.fetchrow(_TAKE_OVER, device_id, expected_version, float(stale_after_s)))

    async def commit(self, r: BackupReservation) -> bool:
        """Make the reserved version current; False if the reservation is no longer held."""
        async with self._db.acquire() as conn:
            return _affected(await conn.execute(_COMMIT, r.device_id, r.pending_version, r.pending_at)) == 1

    async def release(self, r: BackupReservation) -> bool:
        """Give the slot back unchanged (a failed upload, decisions §4.8)."""
        async with self._db.acquire() as conn:
            return _affected(await conn.execute(_RELEASE, r.device_id, r.pending_at)) == 1

    async def stale_slots(self, stale_after_s: float, limit: int) -> list[BackupSlot]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM backups WHERE state = 'UPLOADING' "
                "AND pending_at < now() - make_interval(secs => $1) ORDER BY pending_at LIMIT $2",
                float(stale_after_s), limit)
        return [_slot(r) for r in rows]  # type: ignore[misc]

    async def claim_stale(self, slot: BackupSlot) -> BackupReservation | None:
        """Renew a stale upload's lease for the cleaner, so no upload takes it over meanwhile."""
        async with self._db.acquire() as conn:
            return _reservation(await conn.fetchrow(_CLAIM_STALE, slot.device_id, slot.pending_at,
                                                    slot.pending_version))

    async def current_versions(self, device_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The current version of each of these devices' slots; a device without a slot (deleted:
        the slot goes with it) is left out."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch("SELECT device_id, current_version FROM backups WHERE device_id = ANY($1::uuid[])",
                                    device_ids)
        return {r["device_id"]: r["current_version"] for r in rows}

    async def device_exists(self, device_id: uuid.UUID) -> bool:
        async with self._db.acquire() as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", device_id))
