"""The per-device backup slot and an upload's reservation of it (spec §6.2): plain frozen records."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

__all__ = ["BackupSlot", "BackupReservation", "DeviceGone", "ACTIVE", "UPLOADING"]

# The only states anything writes (spec §6.2, "Row states").
ACTIVE = "ACTIVE"
UPLOADING = "UPLOADING"


class DeviceGone(Exception):
    """The slot's device no longer exists (deleted while its token is still valid)."""


@dataclass(frozen=True, slots=True)
class BackupSlot:
    device_id: uuid.UUID
    current_version: int
    pending_version: int | None
    state: str
    pending_at: datetime.datetime | None


@dataclass(frozen=True, slots=True)
class BackupReservation:
    """An upload's hold on a slot. ``pending_at`` doubles as the lease token: a commit, release or
    reset only applies while the row still carries exactly this reservation, so an upload whose
    slot was taken over can never commit over its successor."""

    device_id: uuid.UUID
    previous_version: int
    pending_version: int
    pending_at: datetime.datetime
