"""Varint encode/decode in both twins: vectors, every input type, bad input, and protobuf itself."""

import enum

import pytest
from google.protobuf.internal import decoder as pb_decoder
from google.protobuf.internal import encoder as pb_encoder
from hypothesis import given
from hypothesis import strategies as st

from obscura._proto import obscura_pb2
from obscura._speedups import WireError
from tests.speedups.twins import FORMS, WIRE_TWINS

UINT64_MAX = (1 << 64) - 1


def _stable_id(value: object) -> str:
    """repr() where it is the same in every process (test ids must match across xdist workers)."""
    return repr(value) if isinstance(value, (type(None), str, bytes, int, float, list)) else type(value).__name__

VECTORS = [
    (b"\x00", 0), (b"\x01", 1), (b"\x7f", 127), (b"\x80\x01", 128), (b"\xac\x02", 300),
    (b"\xff\xff\x03", 65535), (b"\xff\xff\xff\xff\x0f", 0xFFFFFFFF),
    (b"\xff" * 9 + b"\x01", UINT64_MAX),
    (b"\x80\x00", 0),  # non-minimal encodings are valid (protobuf spec), as long as <= 10 bytes
]

MALFORMED = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x80", id="truncated-1"),
    pytest.param(b"\xff" * 9, id="truncated-9"),
    pytest.param(b"\xff" * 9 + b"\x02", id="overflows-uint64"),
    pytest.param(b"\xff" * 9 + b"\x7f", id="10th-byte-0x7f"),
    pytest.param(b"\xff" * 10 + b"\x01", id="11-bytes"),
    pytest.param(b"\x80" * 10 + b"\x00", id="11-bytes-zero-padded"),
]


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw,value", VECTORS)
def test_decode_vectors(wire, form, raw, value):
    assert wire.decode_varint(form(raw), 0) == (value, len(raw))
    # At an offset, with trailing bytes left alone.
    assert wire.decode_varint(form(b"\xaa\xbb" + raw + b"\xcc"), 2) == (value, 2 + len(raw))


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw", MALFORMED)
def test_decode_malformed(wire, form, raw):
    with pytest.raises(WireError):
        wire.decode_varint(form(raw), 0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("pos", [-1, 3, 4, 1 << 40])
def test_decode_position_outside_or_at_end(wire, form, pos):
    with pytest.raises(WireError):
        wire.decode_varint(form(b"\x01\x02\x03"), pos)


@pytest.mark.parametrize("wire", WIRE_TWINS)
def test_decode_strided_memoryview(wire):
    assert wire.decode_varint(memoryview(b"\xac\x00\x02\x00")[::2], 0) == (300, 2)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("bad", [None, "ab", [1], 5, 1.5, object()], ids=_stable_id)
def test_decode_rejects_non_buffers(wire, bad):
    with pytest.raises(TypeError):
        wire.decode_varint(bad, 0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("view", [memoryview(b"abcd").cast("b"), memoryview(b"abcd").cast("I"),
                                  memoryview(b"abcd").cast("B", (2, 2))],
                         ids=["signed", "uint32", "2-D"])
def test_decode_rejects_buffers_of_other_item_types(wire, view):
    with pytest.raises(ValueError):
        wire.decode_varint(view, 0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("bad_pos", [1.0, "0", None])
def test_decode_rejects_non_integer_positions(wire, bad_pos):
    with pytest.raises(TypeError):
        wire.decode_varint(b"\x01", bad_pos)


class Small(enum.IntEnum):
    TWENTY = 20


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("raw,value", [v for v in VECTORS if v[0] != b"\x80\x00"])
def test_encode_vectors(wire, raw, value):
    assert wire.encode_varint(value) == raw
    buf = bytearray(b"\xee")
    wire.write_varint(buf, value)
    assert buf == b"\xee" + raw


@pytest.mark.parametrize("wire", WIRE_TWINS)
def test_encode_negative_and_int_like(wire):
    # int32/int64 negatives are 10-byte two's complement, as protobuf writes them.
    assert wire.encode_varint(-1) == b"\xff" * 9 + b"\x01"
    assert wire.encode_varint(-(1 << 63)) == b"\x80" * 9 + b"\x01"
    assert wire.encode_varint(True) == b"\x01"
    assert wire.encode_varint(Small.TWENTY) == b"\x14"
    assert type(wire.encode_varint(5)) is bytes and type(wire.encode_varint(300)) is bytes


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("value,error", [(1 << 64, ValueError), (-(1 << 63) - 1, ValueError),
                                         (1.0, TypeError), ("1", TypeError), (None, TypeError)])
def test_encode_rejects(wire, value, error):
    with pytest.raises(error):
        wire.encode_varint(value)
    with pytest.raises(error):
        wire.write_varint(bytearray(), value)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("buf", [b"", [], None, memoryview(bytearray(4))], ids=_stable_id)
def test_write_varint_needs_a_bytearray(wire, buf):
    with pytest.raises(TypeError):
        wire.write_varint(buf, 1)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@given(value=st.integers(0, UINT64_MAX))
def test_roundtrip_against_protobuf_encoder(wire, value):
    raw = pb_encoder._VarintBytes(value)
    assert wire.encode_varint(value) == raw
    for form in (bytes, bytearray, memoryview):
        assert wire.decode_varint(form(raw), 0) == (value, len(raw))
    assert pb_decoder._DecodeVarint(wire.encode_varint(value), 0) == (value, len(raw))


@pytest.mark.parametrize("wire", WIRE_TWINS)
@given(value=st.integers(1, UINT64_MAX))
def test_uint64_field_matches_a_real_message(wire, value):
    # Envelope.timestamp is uint64 field 3 (spec §3.1): tag 0x18, then the varint.
    encoded = obscura_pb2.Envelope(timestamp=value).SerializeToString()
    assert encoded == b"\x18" + wire.encode_varint(value)
    assert wire.decode_varint(encoded, 1) == (value, len(encoded))


@pytest.mark.parametrize("wire", WIRE_TWINS)
@given(value=st.integers(-(1 << 31), (1 << 31) - 1).filter(bool))
def test_int32_field_matches_a_real_message(wire, value):
    # PreKeyStatus.min_threshold is int32 field 2: negatives are sign-extended to 64 bits.
    encoded = obscura_pb2.PreKeyStatus(min_threshold=value).SerializeToString()
    assert encoded == b"\x10" + wire.encode_varint(value)
    decoded, end = wire.decode_varint(encoded, 1)
    assert end == len(encoded)
    assert (decoded - (1 << 64) if decoded >> 63 else decoded) == value


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except WireError:
        return ("WireError",)


@given(data=st.binary(max_size=24), pos=st.integers(0, 24))
def test_twins_agree_on_arbitrary_bytes(data, pos):
    twins = [p.values[0] for p in WIRE_TWINS]
    pos = min(pos, len(data))
    for fn_name in ("decode_varint", "read_tag", "read_length_delimited"):
        outcomes = {_outcome(getattr(t, fn_name), data, pos) for t in twins}
        assert len(outcomes) == 1, (fn_name, data, pos, outcomes)
    for wire_type in range(8):
        outcomes = {_outcome(t.skip_field, data, pos, wire_type, 7) for t in twins}
        assert len(outcomes) == 1, ("skip_field", wire_type, data, pos, outcomes)
