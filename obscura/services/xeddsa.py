"""XEdDSA verification of a signed prekey by a Curve25519 identity key (spec §4.2)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["verify_signed_prekey", "montgomery_to_edwards"]

_P = 2**255 - 19


def montgomery_to_edwards(u_bytes: bytes, sign: int) -> bytes | None:
    """The compressed Edwards point of Montgomery u with the given sign bit, or None if u = -1.

    y = (u - 1) / (u + 1) mod p; as in curve25519-dalek the top bit of u is ignored.
    """
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    denominator = (u + 1) % _P
    if denominator == 0:
        return None
    y = (u - 1) * pow(denominator, _P - 2, _P) % _P
    encoded = bytearray(y.to_bytes(32, "little"))
    encoded[31] |= (sign & 1) << 7
    return bytes(encoded)


def verify_signed_prekey(identity_key: bytes, spk_public: bytes, signature: bytes) -> bool:
    """True if ``signature`` is the identity key's XEdDSA signature over the signed prekey.

    Clients differ (spec §4.2): both Edwards sign bits are tried, and the message is first the
    33-byte key (0x05 prefix, libsignal-protocol-typescript) and then the 32-byte raw key.
    Inputs are assumed length-checked (33, 33, 64 bytes); malformed points simply fail.
    """
    if len(identity_key) != 33 or len(signature) != 64:
        return False
    sig = bytearray(signature)
    sig[63] &= 0x7F  # XEdDSA keeps the sign bit of the signer's Edwards key here
    sig_bytes = bytes(sig)
    messages = (spk_public, spk_public[1:]) if len(spk_public) == 33 else (spk_public,)
    for sign in (0, 1):
        point = montgomery_to_edwards(identity_key[1:], sign)
        if point is None:
            return False
        try:
            key = Ed25519PublicKey.from_public_bytes(point)
        except ValueError:
            continue
        for message in messages:
            try:
                key.verify(sig_bytes, message)
                return True
            except InvalidSignature:
                continue
    return False
