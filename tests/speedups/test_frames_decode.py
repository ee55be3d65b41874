"""Frame codec decoders (spec §3.3, §3.5, §5.1): both twins accept and refuse exactly what upb does."""

import pytest
from google.protobuf.message import DecodeError as UpbDecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from obscura import _speedups
from obscura._proto import obscura_pb2 as pb
from obscura._speedups import DecodeError, WireError
from tests.speedups.twins import FORMS

FRAMES_TWINS = [pytest.param(m, id=k) for k, m in _speedups.implementations("frames").items()]
ANY_FORM = st.sampled_from([bytes, bytearray, lambda raw: memoryview(bytes(raw))])


# --- the wire, by hand ---------------------------------------------------------------------------

def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def ld(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def groups(depth: int, field: int = 3) -> bytes:
    return key(field, 3) * depth + key(field, 4) * depth


# Varint spellings upb accepts or refuses: padded, a 10th byte with bits above 2**64 (upb drops them),
# 11 bytes (refused).
VARINT = st.one_of(
    st.integers(0, (1 << 64) - 1).map(varint),
    st.tuples(st.integers(0, 127), st.integers(1, 9)).map(lambda t: bytes([t[0] | 0x80]) + b"\x80" * (t[1] - 1) + b"\x00"),
    st.integers(0, 0x7F).map(lambda last: b"\xff" * 9 + bytes([last])),
    st.just(b"\xff" * 10 + b"\x01"),
)
FIELD_NUMBER = st.sampled_from([0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 20, (1 << 29) - 1])


@st.composite
def unknown_field(draw, depth: int = 2) -> bytes:
    number = draw(FIELD_NUMBER)
    kind = draw(st.sampled_from(["varint", "fixed64", "fixed32", "bytes", "group"] if depth else
                                ["varint", "fixed64", "fixed32", "bytes"]))
    if kind == "varint":
        return key(number, 0) + draw(VARINT)
    if kind == "fixed64":
        return key(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if kind == "fixed32":
        return key(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if kind == "bytes":
        return ld(number, draw(st.binary(max_size=20)))
    inner = b"".join(draw(st.lists(unknown_field(depth - 1), max_size=3)))
    return key(number, 3) + inner + key(number, 4)


def message_of(*known) -> st.SearchStrategy[bytes]:
    return st.lists(st.one_of(unknown_field(), *known), max_size=6).map(b"".join)


ACK = message_of(st.binary(max_size=20).map(lambda i: ld(1, i)),
                 st.binary(min_size=16, max_size=16).map(lambda i: ld(1, i)))
PRE_KEY_STATUS = message_of(VARINT.map(lambda v: key(1, 0) + v), VARINT.map(lambda v: key(2, 0) + v))
ENVELOPE = message_of(st.binary(max_size=20).map(lambda b: ld(1, b)),
                      VARINT.map(lambda v: key(3, 0) + v), st.binary(max_size=20).map(lambda b: ld(4, b)))
ENVELOPE_BATCH = message_of(ENVELOPE.map(lambda e: ld(1, e)))
FRAME = message_of(ACK.map(lambda m: ld(11, m)), PRE_KEY_STATUS.map(lambda m: ld(12, m)),
                   ENVELOPE_BATCH.map(lambda m: ld(13, m)), st.binary(max_size=20).map(lambda b: ld(10, b)))
SUBMISSION = message_of(*(st.binary(max_size=20).map(lambda b, n=n: ld(n, b)) for n in (1, 2, 3)))
SEND_REQUEST = message_of(SUBMISSION.map(lambda m: ld(1, m)))


@st.composite
def mutated(draw, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if action == "truncate":
            del data[where:]
        elif action == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=3))
    return bytes(data)


# --- upb as the oracle ---------------------------------------------------------------------------

def upb_client_frame(data: bytes):
    try:
        frame = pb.WebSocketFrame.FromString(data)
    except UpbDecodeError:
        return "refused"
    which = frame.WhichOneof("payload")
    if which is None:
        return ("none", None)
    if which == "ack":
        return ("ack", list(frame.ack.message_ids))
    return ("other", which)


def upb_send_request(data: bytes):
    try:
        request = pb.SendMessageRequest.FromString(data)
    except UpbDecodeError:
        return "refused"
    return [(s.submission_id, s.device_id, s.message) for s in request.messages]


def ours(decode, data):
    try:
        return decode(data)
    except DecodeError as exc:
        assert str(exc).startswith("failed to decode Protobuf message: ")
        return "refused"


# --- client frames -------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", FRAMES_TWINS)
@settings(max_examples=300)
@given(data=mutated(FRAME) | st.binary(max_size=40), form=ANY_FORM)
def test_client_frame_agrees_with_upb(frames, data, form):
    assert ours(frames.decode_client_frame, form(data)) == upb_client_frame(data)


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("form", FORMS)
def test_ack_frame_and_every_truncation(frames, form):
    ids = [bytes([i]) * 16 for i in range(5)] + [b"", b"short"]
    data = pb.WebSocketFrame(ack=pb.AckMessage(message_ids=ids)).SerializeToString()
    assert frames.decode_client_frame(form(data)) == ("ack", ids)
    for cut in range(len(data)):
        assert ours(frames.decode_client_frame, form(data[:cut])) == upb_client_frame(data[:cut])
    assert frames.decode_client_frame(form(b"")) == ("none", None)


ACK_A, ACK_B = ld(11, ld(1, b"a" * 16)), ld(11, ld(1, b"b" * 16))

CLIENT_CASES = {
    "ack-twice-merges": (ACK_A + ACK_B, ("ack", [b"a" * 16, b"b" * 16])),
    "other-member-replaces-ack": (ACK_A + ld(12, b"") + ACK_B, ("ack", [b"b" * 16])),
    "last-member-wins": (ACK_A + ld(13, b""), ("other", "envelope_batch")),
    "pre-key-status": (ld(12, b"\x08\x05\x10\x14"), ("other", "pre_key_status")),
    "empty-ack": (ld(11, b""), ("ack", [])),
    "old-field-10-unparsed": (ld(10, b"\xff\xff\xff"), ("none", None)),
    "ack-as-varint-is-unknown": (key(11, 0) + b"\x01", ("none", None)),
    "ack-as-group-is-unknown": (key(11, 3) + key(11, 4), ("none", None)),
    "ids-as-varint-are-unknown": (ld(11, key(1, 0) + b"\x05"), ("ack", [])),
    "pks-int-as-bytes-is-unknown": (ld(12, ld(1, b"\xff")), ("other", "pre_key_status")),
    "10-byte-varint-high-bits": (key(20, 0) + b"\xff" * 9 + b"\x7f", ("none", None)),
    "padded-zero-length-5-bytes": (key(11, 2) + b"\x80" * 4 + b"\x00", ("ack", [])),
    "padded-zero-length-6-bytes": (key(11, 2) + b"\x80" * 5 + b"\x00", "refused"),
    "length-10th-byte-high-bits": (key(11, 2) + b"\x80" * 9 + b"\x02", "refused"),
    "11-byte-varint": (key(20, 0) + b"\xff" * 10 + b"\x01", "refused"),
    "malformed-pks-refused": (ld(12, b"\x08"), "refused"),
    "malformed-envelope-refused": (ld(13, ld(1, b"\x22\x05ab")), "refused"),
    "end-group-in-ack": (ld(11, key(3, 4)), "refused"),
    "group-spanning-ack-end": (ld(11, key(3, 3)) + key(3, 4), "refused"),
    "stray-end-group": (key(3, 4), "refused"),
    "field-0": (b"\x00", "refused"),
    "wire-type-6": (b"\x0e", "refused"),
    "tag-6-bytes": (b"\x88\x80\x80\x80\x80\x00\x00", "refused"),
    "tag-above-uint32": (b"\xfa\xff\xff\xff\x1f\x00", "refused"),
    "length-2gib": (key(20, 2) + varint(0x7FFFFFFF), "refused"),
    "fixed64-short": (key(20, 1) + bytes(7), "refused"),
    # Inside an unknown group upb's skipper reads tags more laxly: field number 0 passes.
    "field-0-in-group": (key(3, 3) + b"\x00\x00" + key(3, 4), ("none", None)),
    "field-0-group-in-group": (key(3, 3) + b"\x03\x04" + key(3, 4), ("none", None)),
    "field-0-in-group-in-ack": (ld(11, key(3, 3) + b"\x00\x00" + key(3, 4)), ("ack", [])),
    "padded-end-group-tag": (key(3, 3) + b"\x9c\x00", ("none", None)),
    "field-0-end-in-group": (key(3, 3) + b"\x04" + key(3, 4), "refused"),
    "wire-type-7-in-group": (key(3, 3) + b"\x07" + key(3, 4), "refused"),
    "tag-6-bytes-in-group": (key(3, 3) + b"\x88\x80\x80\x80\x80\x00\x00" + key(3, 4), "refused"),
}


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CLIENT_CASES)
def test_client_frame_cases(frames, form, case):
    data, expected = CLIENT_CASES[case]
    assert upb_client_frame(data) == expected  # what upb does is what we promise
    assert ours(frames.decode_client_frame, form(data)) == expected


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("level,wrap", [
    (0, lambda inner: inner), (1, lambda inner: ld(11, inner)), (1, lambda inner: ld(12, inner)),
    (2, lambda inner: ld(13, ld(1, inner))), (1, lambda inner: ld(13, inner))])
def test_depth_budget_is_shared_as_in_upb(frames, level, wrap):
    # upb spends one unit of a budget of 100 per sub-message and per group.
    fits, too_deep = wrap(groups(100 - level)), wrap(groups(101 - level))
    assert upb_client_frame(fits) != "refused" and upb_client_frame(too_deep) == "refused"
    assert ours(frames.decode_client_frame, fits) == upb_client_frame(fits)
    with pytest.raises(DecodeError, match="recursion limit reached"):
        frames.decode_client_frame(too_deep)


@pytest.mark.parametrize("frames", FRAMES_TWINS)
def test_decode_input_types(frames):
    assert isinstance(DecodeError("x"), (WireError, ValueError))
    for bad in (None, "text", 5, [1]):
        with pytest.raises(TypeError):
            frames.decode_client_frame(bad)
        with pytest.raises(TypeError):
            frames.decode_send_message_request(bad)
    with pytest.raises(ValueError):
        frames.decode_client_frame(memoryview(b"abcd").cast("I"))
    ids = frames.decode_client_frame(bytearray(ACK_A))[1]
    assert type(ids[0]) is bytes  # copies, never views into a buffer the caller may reuse


# --- SendMessageRequest --------------------------------------------------------------------------

@pytest.mark.parametrize("frames", FRAMES_TWINS)
@settings(max_examples=300)
@given(data=mutated(SEND_REQUEST) | st.binary(max_size=40), form=ANY_FORM)
def test_send_request_agrees_with_upb(frames, data, form):
    assert ours(frames.decode_send_message_request, form(data)) == upb_send_request(data)


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("form", FORMS)
def test_send_request_and_every_truncation(frames, form):
    Sub = pb.SendMessageRequest.Submission
    data = pb.SendMessageRequest(messages=[
        Sub(submission_id=b"s" * 16, device_id=b"d" * 16, message=b"m" * 300),
        Sub(submission_id=b"x"), Sub(),
    ]).SerializeToString()
    assert frames.decode_send_message_request(form(data)) == [
        (b"s" * 16, b"d" * 16, b"m" * 300), (b"x", b"", b""), (b"", b"", b"")]
    for cut in range(len(data)):
        assert ours(frames.decode_send_message_request, form(data[:cut])) == upb_send_request(data[:cut])
    assert frames.decode_send_message_request(form(b"")) == []
    # A repeated scalar inside a submission: the last one wins; unknown fields are skipped.
    twice = ld(1, ld(1, b"first") + key(7, 0) + b"\x01" + ld(1, b"second"))
    assert frames.decode_send_message_request(twice) == upb_send_request(twice) == [(b"second", b"", b"")]


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("data,text", [
    (b"\x0a", "SendMessageRequest.messages: invalid varint"),
    (b"\x0a\x05\x0a\x01", "SendMessageRequest.messages: buffer underflow"),
    (ld(1, b"\x1a\x05ab"), "Submission.message: SendMessageRequest.messages: buffer underflow"),
    (ld(1, b"\x00"), "SendMessageRequest.messages: invalid tag value: 0"),
    (b"\x0f", "invalid wire type value: 7"),
    (key(1, 2) + b"\x80" * 5 + b"\x00", "SendMessageRequest.messages: invalid length delimiter"),
    (key(2, 4), "unexpected end group tag"),
    (groups(101), "recursion limit reached"),
])
def test_send_request_error_text_reads_like_prost(frames, data, text):
    # Spec §2.10: the handler answers 400 "Invalid SendMessageRequest protobuf: <this text>".
    assert upb_send_request(data) == "refused"
    with pytest.raises(DecodeError) as caught:
        frames.decode_send_message_request(data)
    assert str(caught.value) == f"failed to decode Protobuf message: {text}"


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@settings(max_examples=200)
@given(data=mutated(FRAME | SEND_REQUEST))
def test_twins_agree_on_error_text(frames, data):
    reference = _speedups.implementations("frames")["py"]

    def outcome(decode):
        try:
            return decode(data)
        except DecodeError as exc:
            return str(exc)

    for name in ("decode_client_frame", "decode_send_message_request"):
        assert outcome(getattr(frames, name)) == outcome(getattr(reference, name))
