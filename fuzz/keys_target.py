"""Fuzz target for key decoding and XEdDSA verification: strict base64, lengths, tampered signatures.

Modes (first byte % 3): 0 decodes the rest as a key and as a signature (only KeyFormatError, and
whatever is accepted re-encodes to the same text); 1 verifies raw bytes as (identity, spk,
signature), which must never raise; 2 XORs the rest into a genuine signed triple, which may verify
only when the change is one XEdDSA ignores (the sign bit in signature byte 63, the top bit of u,
u modulo p, and the 0x05 prefix when the 32-byte form was signed).

Run:   .venv/bin/python fuzz/keys_target.py /tmp/keys-corpus fuzz/corpus/keys -max_total_time=600
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from obscura.domain.keys import KeyFormatError, b64encode, decode_public_key, decode_signature
from obscura.services.xeddsa import montgomery_to_edwards, verify_signed_prekey

__all__ = ["check"]

_P = 2**255 - 19


def _signed_triple(seed: int, form: int) -> bytes:
    """identity (33) + spk (33) + signature (64) from a fixed key, like tests/support/signal_keys."""
    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    edwards = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    y = int.from_bytes(edwards, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
    identity = b"\x05" + u.to_bytes(32, "little")
    spk = b"\x05" + bytes(range(7, 39))
    sig = bytearray(private.sign(spk if form == 33 else spk[1:]))
    sig[63] |= (edwards[31] >> 7) << 7
    return identity + spk + bytes(sig)


_TRIPLES = {33: _signed_triple(1, 33), 32: _signed_triple(2, 32)}


def _normal(triple: bytes, form: int) -> tuple[int, bytes, bytes]:
    u = int.from_bytes(triple[1:33], "little") & ((1 << 255) - 1)
    spk = triple[33:66] if form == 33 else triple[34:66]
    sig = bytearray(triple[66:130])
    sig[63] &= 0x7F
    return u % _P, spk, bytes(sig)


def _check_text(text: str) -> None:
    for decode, length in ((decode_public_key, 33), (decode_signature, 64)):
        try:
            raw = decode(text)
        except KeyFormatError:
            continue
        assert len(raw) == length
        assert b64encode(raw) == text, "a non-canonical encoding was accepted"
        assert base64.b64decode(text, validate=True) == raw


def check(data: bytes) -> None:
    """Raise AssertionError when key decoding or signature verification misbehaves."""
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        _check_text(rest.decode("utf-8", "surrogateescape"))
        _check_text(rest.decode("latin-1"))
    elif mode == 1:
        assert verify_signed_prekey(rest[:33], rest[33:66], rest[66:130]) in (True, False)
        point = montgomery_to_edwards(rest[:32].ljust(32, b"\0"), data[0] >> 7)
        assert point is None or len(point) == 32
    else:
        form = 33 if data[0] & 0x80 else 32
        genuine = _TRIPLES[form]
        assert verify_signed_prekey(genuine[:33], genuine[33:66], genuine[66:130])
        mask = rest[:130].ljust(130, b"\0")
        tampered = bytes(a ^ b for a, b in zip(genuine, mask))
        if verify_signed_prekey(tampered[:33], tampered[33:66], tampered[66:130]):
            assert _normal(tampered, form) == _normal(genuine, form), "a tampered signature verified"


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    run_fuzzer(check)


if __name__ == "__main__":
    main()
