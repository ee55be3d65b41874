"""Byte formats shared with upstream nodes on the same Redis (spec §1.5, §14)."""

from __future__ import annotations

import re
import uuid

from obscura.coord.base import Event

__all__ = ["channel_name", "channel_pattern", "decode_event", "encode_event", "parse_device_id",
           "member"]

_EVENT_PAYLOADS = {int(e): bytes((int(e),)) for e in Event}  # known event -> its one-byte payload
_HEX = frozenset("0123456789abcdefABCDEF")
_HYPHENS = (8, 13, 18, 23)
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def member(device_id: uuid.UUID) -> str:
    """A device as Redis sees it: lower-case hyphenated UUID text (spec §14)."""
    if not isinstance(device_id, uuid.UUID):
        raise TypeError(f"device id must be a uuid.UUID, got {type(device_id).__name__}")
    return str(device_id)


def channel_name(prefix: str, device_id: uuid.UUID) -> str:
    """``{prefix}{device-uuid}`` (spec §1.5)."""
    return prefix + member(device_id)


def channel_pattern(prefix: str) -> str:
    """The node's single PSUBSCRIBE pattern; glob characters in the prefix match literally."""
    return _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"


def encode_event(event: int) -> bytes:
    """One byte (spec §1.5); anything but a known event is a programming error (ValueError)."""
    payload = _EVENT_PAYLOADS.get(event)
    return payload if payload is not None else bytes((int(Event(event)),))  # Event() raises


def decode_event(payload: bytes) -> int | None:
    """Upstream reads the first byte; empty payloads and unknown bytes are ignored (spec §1.5)."""
    if not payload:
        return None
    first = payload[0]
    return first if first in _EVENT_PAYLOADS else None


def parse_device_id(text: str) -> uuid.UUID | None:
    """Parse a UUID in the forms Rust's ``Uuid::parse_str`` accepts, else None.

    Forms: 32 hex digits, hyphenated 8-4-4-4-12, ``{hyphenated}`` and ``urn:uuid:hyphenated``
    (hex in either case). Python's ``uuid.UUID`` is laxer (hyphens anywhere), hence this check.
    """
    if len(text) == 45 and text[:9].lower() == "urn:uuid:":
        text = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        text = text[1:-1]
    if len(text) == 36:
        if any(text[i] != "-" for i in _HYPHENS):
            return None
        digits = text.replace("-", "")
    elif len(text) == 32:
        digits = text
    else:
        return None
    if len(digits) != 32 or not _HEX.issuperset(digits):
        return None
    return uuid.UUID(hex=digits)
