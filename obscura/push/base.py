"""The push provider interface: one content-free wake-up per call, and its four outcomes (spec §6.3)."""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["PushProvider", "PushResult", "PushTarget", "TOKEN_TYPES", "COLLAPSE_KEY"]

TOKEN_TYPES = ("fcm", "apns")
# Every wake-up replaces the previous one still waiting at the provider (spec §6.3).
COLLAPSE_KEY = "obscura_check"


class PushResult(enum.Enum):
    """What the worker does next (spec §6.3 step 4 table)."""

    SUCCESS = "success"                # delete the job
    UNREGISTERED = "unregistered"      # delete the job and the token
    QUOTA_EXCEEDED = "quota_exceeded"  # keep the job: retried once its lease expires
    OTHER = "other"                    # same as quota, counted apart


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One device to wake. ``token`` is private: log ``device_id`` only, never the token."""

    device_id: uuid.UUID
    token: str
    token_type: str = "fcm"

    def __repr__(self) -> str:  # keep the token out of tracebacks and debug logs
        return f"PushTarget(device_id={self.device_id}, token_type={self.token_type!r})"


class PushProvider(ABC):
    """Sends a data-only ``check`` wake-up: no sender, no content, no visible alert.

    ``send`` never raises for a delivery problem; it maps it to a :class:`PushResult`
    (anything unexpected is ``OTHER``, which retries).
    """

    name: str = "push"

    @abstractmethod
    async def send(self, target: PushTarget) -> PushResult:
        """Wake one device."""

    async def close(self) -> None:
        """Release connections (idempotent)."""
