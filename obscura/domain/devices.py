"""Devices and the prekey bundles handed out for them (spec §2.7, §2.9): plain frozen records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from obscura.domain.keys import OneTimePreKey, SignedPreKey

__all__ = ["Device", "PreKeyBundle", "StoredIdentity", "MAX_DEVICE_NAME_CHARS"]

# devices.name is VARCHAR(100) (spec §9); longer names are a 400, not a 500 (decisions §4.4).
MAX_DEVICE_NAME_CHARS = 100


@dataclass(frozen=True, slots=True)
class Device:
    device_id: uuid.UUID
    name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    identity_key: bytes
    registration_id: int


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """One device's bundle; ``one_time_pre_key`` is None when the device has none left."""

    device_id: uuid.UUID
    registration_id: int
    identity_key: bytes
    signed_pre_key: SignedPreKey
    one_time_pre_key: OneTimePreKey | None
