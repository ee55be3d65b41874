"""Signal key material on the wire: strict padded base64, 33-byte 0x05 keys, 64-byte signatures (spec §4.1)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

__all__ = [
    "KeyFormatError", "b64decode_strict", "b64encode", "decode_public_key", "decode_signature",
    "SignedPreKey", "OneTimePreKey", "KeyUpload",
]

_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_VALUES = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


class KeyFormatError(ValueError):
    """A key or signature that is not in the wire format; the message is shown to the client."""


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Standard alphabet, canonical padding required; errors worded like Rust's base64 crate."""
    raw = text.encode("utf-8", "surrogatepass")
    body = raw.rstrip(b"=")
    pad = len(raw) - len(body)
    for offset, byte in enumerate(body):
        if byte not in _ALPHABET:
            raise KeyFormatError(f"Invalid symbol {byte}, offset {offset}.")
    if len(body) % 4 == 1:
        raise KeyFormatError("Invalid input length.")
    if (len(body) + pad) % 4 != 0 or pad > 2 or (pad and len(body) % 4 == 0):
        raise KeyFormatError("Invalid padding")
    if body:
        # Non-canonical trailing bits in the last symbol are rejected, as the Rust decoder does.
        spare_bits = {2: 4, 3: 2}.get(len(body) % 4, 0)
        last = body[-1]
        if spare_bits and _VALUES[last] & ((1 << spare_bits) - 1):
            raise KeyFormatError(f"Invalid last symbol {last}, offset {len(body) - 1}.")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the checks above are stricter
        raise KeyFormatError("Invalid padding") from exc


def decode_public_key(text: str) -> bytes:
    key = b64decode_strict(text)
    if len(key) != 33:
        raise KeyFormatError(f"Invalid key length: {len(key)} (expected 33 bytes with 0x05 prefix)")
    if key[0] != 0x05:
        raise KeyFormatError("Invalid key prefix (expected 0x05)")
    return key


def decode_signature(text: str) -> bytes:
    sig = b64decode_strict(text)
    if len(sig) != 64:
        raise KeyFormatError(f"Invalid signature length: {len(sig)} (expected 64)")
    return sig


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    key_id: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class KeyUpload:
    """A decoded key upload (device creation or POST /v1/devices/keys)."""

    identity_key: bytes | None
    registration_id: int | None
    signed_pre_key: SignedPreKey
    one_time_pre_keys: tuple[OneTimePreKey, ...]
