"""XEdDSA verification of signed prekeys (spec §4.2) against a real signer, tampering and junk points."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obscura.services.xeddsa import montgomery_to_edwards, verify_signed_prekey
from tests.support.signal_keys import IdentityKey, random_public_key

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # the Ed25519 group order


@pytest.mark.parametrize("sign_bit", [0, 1])
@pytest.mark.parametrize("message_form", [33, 32])
def test_real_signatures_verify(sign_bit, message_form):
    identity = IdentityKey.with_sign_bit(sign_bit)
    spk = random_public_key()
    signature = identity.sign(spk if message_form == 33 else spk[1:])
    assert signature[63] >> 7 == sign_bit  # XEdDSA carries the sign bit in the signature
    assert verify_signed_prekey(identity.public, spk, signature)


def test_montgomery_to_edwards_recovers_the_signer_point():
    for bit in (0, 1):
        identity = IdentityKey.with_sign_bit(bit)
        assert montgomery_to_edwards(identity.public[1:], bit) == identity.edwards


def test_sign_bit_in_signature_is_ignored():
    identity = IdentityKey()
    spk = random_public_key()
    signature = bytearray(identity.sign(spk))
    signature[63] ^= 0x80
    assert verify_signed_prekey(identity.public, spk, bytes(signature))


@pytest.mark.parametrize("index", [0, 17, 31, 32, 48, 62])
def test_tampered_signature_rejected(index):
    identity = IdentityKey()
    spk = random_public_key()
    signature = bytearray(identity.sign(spk))
    signature[index] ^= 0x01
    assert not verify_signed_prekey(identity.public, spk, bytes(signature))


def test_other_message_or_key_rejected():
    identity = IdentityKey()
    spk = random_public_key()
    signature = identity.sign(spk)
    tampered = bytearray(spk)
    tampered[5] ^= 0x40
    assert not verify_signed_prekey(identity.public, bytes(tampered), signature)
    assert not verify_signed_prekey(IdentityKey().public, spk, signature)
    # Only the two message forms are accepted: a prefix other than 0x05 changes the 33-byte message.
    assert not verify_signed_prekey(identity.public, b"\x06" + spk[1:], signature)


def test_non_canonical_scalar_rejected():
    identity = IdentityKey()
    spk = random_public_key()
    signature = identity.sign(spk)
    s = int.from_bytes(signature[32:63] + bytes([signature[63] & 0x7F]), "little") + _L
    forged = signature[:32] + s.to_bytes(32, "little")  # s + L < 2**253: a malleated copy
    assert not verify_signed_prekey(identity.public, spk, forged)


@pytest.mark.parametrize("u", [0, 1, _P - 1, _P, _P + 1, 2**255 - 1, 2**256 - 1, 9])
def test_malformed_identity_points_never_crash(u):
    key = b"\x05" + (u % 2**256).to_bytes(32, "little")
    assert verify_signed_prekey(key, random_public_key(), os.urandom(64)) is False


def test_wrong_lengths_are_rejected():
    identity = IdentityKey()
    spk = random_public_key()
    signature = identity.sign(spk)
    assert not verify_signed_prekey(identity.public[:32], spk, signature)
    assert not verify_signed_prekey(identity.public, spk, signature[:63])
    assert not verify_signed_prekey(identity.public, spk, signature + b"\x00")


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=33, max_size=33), spk=st.binary(min_size=33, max_size=33),
       signature=st.binary(min_size=64, max_size=64))
def test_random_inputs_return_false_without_raising(key, spk, signature):
    assert verify_signed_prekey(key, spk, signature) is False
