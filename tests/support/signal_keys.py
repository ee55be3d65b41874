"""Real Signal-style keys for tests: an XEdDSA-compatible identity signer and key bundles (spec §4)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_P = 2**255 - 19


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def random_public_key() -> bytes:
    """A 33-byte 0x05-prefixed key (OTPKs and SPKs are never point-checked)."""
    return b"\x05" + os.urandom(32)


@dataclass
class IdentityKey:
    """An Ed25519 signer whose public key is published in Montgomery form, as XEdDSA does.

    ``sign_bit`` is the Edwards sign bit of the public point; the signature carries it in the top
    bit of byte 63 (XEdDSA), so verifiers must clear it and try both Edwards points.
    """

    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def edwards(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def sign_bit(self) -> int:
        return self.edwards[31] >> 7

    @property
    def public(self) -> bytes:
        y = int.from_bytes(self.edwards, "little") & ((1 << 255) - 1)
        u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
        return b"\x05" + u.to_bytes(32, "little")

    def sign(self, message: bytes) -> bytes:
        sig = bytearray(self.private.sign(message))
        sig[63] |= self.sign_bit << 7
        return bytes(sig)

    @classmethod
    def with_sign_bit(cls, bit: int) -> IdentityKey:
        while True:
            key = cls()
            if key.sign_bit == bit:
                return key


def key_bundle(identity: IdentityKey | None = None, *, spk_id: int = 1, otpk_count: int = 1,
               otpk_start: int = 0, registration_id: int = 123, message_form: int = 33) -> dict:
    """The JSON keys of POST /v1/devices or /v1/devices/keys (camelCase, padded base64)."""
    identity = identity or IdentityKey()
    spk = random_public_key()
    signature = identity.sign(spk if message_form == 33 else spk[1:])
    return {
        "identityKey": b64(identity.public),
        "registrationId": registration_id,
        "signedPreKey": {"keyId": spk_id, "publicKey": b64(spk), "signature": b64(signature)},
        "oneTimePreKeys": [{"keyId": otpk_start + i, "publicKey": b64(random_public_key())}
                           for i in range(otpk_count)],
    }
