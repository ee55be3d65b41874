"""Tags, length-delimited fields, skipping unknown fields (groups as upb does) and WireReader."""

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from obscura._proto import obscura_pb2
from obscura._speedups import MAX_GROUP_DEPTH, WireError
from tests.speedups.twins import FORMS, WIRE_TWINS


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw,expected", [
    (b"\x08", (1, 0, 1)), (b"\x62", (12, 2, 1)), (b"\x6a", (13, 2, 1)), (b"\x1b", (3, 3, 1)),
    (b"\x1c", (3, 4, 1)), (b"\x0d", (1, 5, 1)), (b"\x09", (1, 1, 1)),
    (b"\xfa\xff\xff\xff\x0f", ((1 << 29) - 1, 2, 5)),  # the largest field number
])
def test_read_tag(wire, form, raw, expected):
    assert wire.read_tag(form(raw), 0) == expected


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="empty"), pytest.param(b"\x80", id="truncated"),
    pytest.param(b"\x00", id="field-0"), pytest.param(b"\x07", id="field-0-wt7"),
    pytest.param(b"\x0e", id="wire-type-6"), pytest.param(b"\x0f", id="wire-type-7"),
    pytest.param(b"\xfa\xff\xff\xff\x1f", id="above-uint32"),
    pytest.param(b"\x88\x80\x80\x80\x80\x00", id="6-byte-padded"),
])
def test_read_tag_malformed(wire, form, raw):
    with pytest.raises(WireError):
        wire.read_tag(form(raw), 0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
def test_read_length_delimited(wire, form):
    assert wire.read_length_delimited(form(b"\x03abc"), 0) == (1, 4, 4)
    assert wire.read_length_delimited(form(b"\x00"), 0) == (1, 1, 1)
    assert wire.read_length_delimited(form(b"xx\x02abz"), 2) == (3, 5, 5)
    for bad in (b"", b"\x03ab", b"\x80", b"\xff\xff\xff\xff\x07" + bytes(8),
                b"\xff" * 9 + b"\x01" + b"x"):
        with pytest.raises(WireError):
            wire.read_length_delimited(form(bad), 0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw,wire_type,end", [
    (b"\xac\x02", 0, 2), (bytes(8), 1, 8), (b"\x02ab", 2, 3), (bytes(4), 5, 4),
    (b"\x08\x01\x1c", 3, 3),              # group 3 holding field 1 = 1, then its end tag
    (b"\x1c", 3, 1),                       # empty group
    (b"\x23\x24\x1c", 3, 3),               # group 4 nested in group 3
    (b"\x0a\x01\x1c\x1c", 3, 4),           # a length-delimited field that contains an end tag
])
def test_skip_field(wire, form, raw, wire_type, end):
    assert wire.skip_field(form(raw + b"\xee"), 0, wire_type, 3) == end


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("raw,wire_type", [
    pytest.param(b"\x80", 0, id="varint-truncated"), pytest.param(bytes(7), 1, id="fixed64-short"),
    pytest.param(bytes(3), 5, id="fixed32-short"), pytest.param(b"\x05ab", 2, id="bytes-short"),
    pytest.param(b"", 3, id="group-unterminated"), pytest.param(b"\x08\x01", 3, id="group-open"),
    pytest.param(b"\x24", 3, id="group-mismatched-end"),
    pytest.param(b"\x23\x1c", 3, id="group-inner-left-open"),
    pytest.param(b"", 4, id="stray-end-group"),
    pytest.param(b"\x00", 6, id="wire-type-6"), pytest.param(b"\x00", 7, id="wire-type-7"),
])
def test_skip_field_malformed(wire, form, raw, wire_type):
    with pytest.raises(WireError):
        wire.skip_field(form(raw), 0, wire_type, 3)


def _nested_groups(depth: int) -> bytes:
    return b"\x1b" * depth + b"\x1c" * depth


@pytest.mark.parametrize("wire", WIRE_TWINS)
def test_group_depth_limit(wire):
    # skip_field is called after the first start tag has been read, hence the [1:].
    ok = _nested_groups(MAX_GROUP_DEPTH)
    assert wire.skip_field(ok, 1, 3, 3) == len(ok)
    with pytest.raises(WireError):
        wire.skip_field(_nested_groups(MAX_GROUP_DEPTH + 1), 1, 3, 3)


def _skip_all(wire, data: bytes) -> None:
    reader = wire.WireReader(data)
    while not reader.at_end():
        field_number, wire_type = reader.read_tag()
        reader.skip_field(wire_type, field_number)


UNKNOWN_FIELD_CASES = [
    b"", b"\xa0\x01\x05", b"\xa1\x01" + bytes(8), b"\xa2\x01\x02hi", b"\xa5\x01" + bytes(4),
    b"\xa3\x01\xa4\x01", b"\xa3\x01\xa0\x01\x07\xa4\x01", b"\xa3\x01\xac\x01",  # groups 20 / 21
    b"\xa4\x01", b"\xa3\x01", b"\xa6\x01\x00", b"\xa7\x01\x00", b"\x00", b"\xa2\x01\x05ab",
    b"\xa1\x01" + bytes(7), _nested_groups(100)[:100] + b"\x1c" * 100,
    b"\x1b" * 101 + b"\x1c" * 101, b"\xa0\x01\x80", b"\xfa\xff\xff\xff\x1f\x00",
]


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("data", UNKNOWN_FIELD_CASES, ids=lambda d: d.hex()[:24] or "empty")
def test_unknown_fields_accepted_exactly_when_upb_accepts(wire, data):
    # PreKeyStatus knows fields 1 and 2 only: everything here is an unknown field to upb.
    try:
        obscura_pb2.PreKeyStatus.FromString(data)
        upb_ok = True
    except DecodeError:
        upb_ok = False
    try:
        _skip_all(wire, data)
        ours_ok = True
    except WireError:
        ours_ok = False
    assert ours_ok == upb_ok


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
def test_reader_walks_a_real_ack_frame(wire, form):
    ids = [bytes([i]) * 16 for i in range(3)] + [b""]
    frame = obscura_pb2.WebSocketFrame(ack=obscura_pb2.AckMessage(message_ids=ids))
    data = frame.SerializeToString() + b"\xa3\x01\x08\x01\xa4\x01"  # plus an unknown group 20
    reader = wire.WireReader(form(data))
    assert (reader.pos, reader.end) == (0, len(data))
    assert reader.read_tag() == (11, 2)
    start, end = reader.read_length_delimited()
    assert reader.pos == end
    reader.seek(start)  # walk into the AckMessage
    got = []
    while reader.pos < end:
        assert reader.read_tag() == (1, 2)
        s, e = reader.read_length_delimited()
        got.append(bytes(data[s:e]))
    assert got == ids
    field_number, wire_type = reader.read_tag()
    assert (field_number, wire_type) == (20, 3)
    reader.skip_field(wire_type, field_number)
    assert reader.at_end() and reader.pos == len(data)
    with pytest.raises(WireError):
        reader.read_varint()
    with pytest.raises(AttributeError):
        reader.pos = 0  # read-only: the compiled twin must never index outside the buffer


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("pos", [-1, 2, 1 << 40])
def test_reader_rejects_positions_outside(wire, pos):
    with pytest.raises(WireError):
        wire.WireReader(b"\x01", pos)
    reader = wire.WireReader(b"\x01")
    with pytest.raises(WireError):
        reader.seek(pos)
    reader.seek(1)
    assert reader.at_end()
    with pytest.raises(TypeError):
        reader.seek(0.0)


@pytest.mark.parametrize("wire", WIRE_TWINS)
@pytest.mark.parametrize("form", FORMS)
@given(value=st.binary(max_size=300))
def test_bytes_field_matches_a_real_message(wire, form, value):
    # AckMessage.message_ids is repeated bytes field 1: every entry is written, even an empty one.
    expected = obscura_pb2.AckMessage(message_ids=[value]).SerializeToString()
    assert wire.encode_bytes_field(1, form(value)) == expected
    buf = bytearray(b"\x00")
    wire.write_bytes_field(buf, 1, form(value))
    assert buf == b"\x00" + expected


@pytest.mark.parametrize("wire", WIRE_TWINS)
def test_bytes_field_numbers_and_types(wire):
    assert wire.encode_bytes_field(13, b"") == b"\x6a\x00"
    assert wire.encode_bytes_field((1 << 29) - 1, b"x") == b"\xfa\xff\xff\xff\x0f\x01x"
    for bad in (0, -1, 1 << 29):
        with pytest.raises(ValueError):
            wire.encode_bytes_field(bad, b"x")
    for bad in (None, "text", 5):
        with pytest.raises(TypeError):
            wire.encode_bytes_field(1, bad)
    with pytest.raises(ValueError):
        wire.encode_bytes_field(1, memoryview(b"abcd").cast("I"))
    with pytest.raises(TypeError):
        wire.write_bytes_field(b"", 1, b"x")
