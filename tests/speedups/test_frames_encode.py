"""Frame codec encoders (spec §3.1, §3.4, §3.6, §5.1): both twins write exactly upb's bytes."""

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obscura import _speedups
from obscura._proto import obscura_pb2 as pb
from tests.speedups.twins import FORMS

FRAMES_TWINS = [pytest.param(m, id=k) for k, m in _speedups.implementations("frames").items()]
ANY_FORM = st.sampled_from([bytes, bytearray, lambda raw: memoryview(bytes(raw))])
INT32 = st.integers(-(1 << 31), (1 << 31) - 1)
UINT64 = st.integers(0, (1 << 64) - 1)
ID = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40))


def _upb_envelope(id16, sender, timestamp, message, device) -> bytes:
    return pb.Envelope(id=id16, sender_id=sender, timestamp=timestamp, message=message,
                       sender_device_id=device).SerializeToString()


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@given(id16=ID, sender=ID, timestamp=UINT64 | st.sampled_from([0, 1, 127, 128, (1 << 64) - 1]),
       message=st.binary(max_size=600), device=ID, form=ANY_FORM)
def test_envelope_matches_upb(frames, id16, sender, timestamp, message, device, form):
    got = frames.encode_envelope(form(id16), form(sender), timestamp, form(message), form(device))
    assert type(got) is bytes
    assert got == _upb_envelope(id16, sender, timestamp, message, device)


@pytest.mark.parametrize("frames", FRAMES_TWINS)
def test_envelope_defaults_are_left_out(frames):
    assert frames.encode_envelope(b"", b"", 0, b"", b"") == b""
    assert frames.encode_envelope(b"", b"", 1, b"", b"") == b"\x18\x01"
    assert frames.encode_envelope(b"i" * 16, b"", 0, b"", b"d") == b"\x0a\x10" + b"i" * 16 + b"\x2a\x01d"
    with pytest.raises(TypeError):  # upb would read None as "unset"; a missing time is a bug here
        frames.encode_envelope(b"", b"", None, b"", b"")


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("timestamp,error", [
    (-1, ValueError), (1 << 64, ValueError), (True, TypeError), (1.0, TypeError), ("1", TypeError)])
def test_envelope_timestamp_refused_as_upb_refuses_it(frames, timestamp, error):
    with pytest.raises(error):
        pb.Envelope(timestamp=timestamp)
    with pytest.raises(error):
        frames.encode_envelope(b"", b"", timestamp, b"", b"")


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("bad,error", [
    ("text", TypeError), (None, TypeError), (5, TypeError),
    (memoryview(array("I", [1, 2])), ValueError), (memoryview(b"abcd").cast("B", (2, 2)), ValueError)])
def test_bytes_arguments_must_be_byte_buffers(frames, bad, error):
    with pytest.raises(error):
        frames.encode_envelope(bad, b"", 0, b"", b"")
    with pytest.raises(error):
        frames.encode_envelope(b"", b"", 0, bad, b"")
    with pytest.raises(error):
        frames.encode_envelope_batch_frame([b"x", bad])
    with pytest.raises(error):
        frames.encode_send_message_response([(bad, 1, "x")])


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@given(envelopes=st.lists(st.tuples(ID, ID, UINT64, st.binary(max_size=300), ID), max_size=12),
       form=ANY_FORM)
def test_envelope_batch_frame_matches_upb(frames, envelopes, form):
    encoded = [frames.encode_envelope(*fields) for fields in envelopes]
    expected = pb.WebSocketFrame(envelope_batch=pb.EnvelopeBatch(
        envelopes=[pb.Envelope.FromString(raw) for raw in encoded])).SerializeToString()
    got = frames.encode_envelope_batch_frame([form(raw) for raw in encoded])
    assert type(got) is bytes
    assert got == expected


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@pytest.mark.parametrize("form", FORMS)
def test_envelope_batch_frame_splices_bytes_verbatim(frames, form):
    # Not canonical (an unknown field 9, a repeated id): upb would reorder, the splice must not.
    odd = b"\x48\x01\x0a\x01a\x0a\x01b"
    big = b"\x22\x81\x01" + b"m" * 129  # entry length 132 needs a two-byte varint
    frame = frames.encode_envelope_batch_frame((form(odd), form(b""), form(big)))
    body = b"\x0a\x08" + odd + b"\x0a\x00" + b"\x0a\x84\x01" + big
    assert frame == b"\x6a" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body
    assert frames.encode_envelope_batch_frame([]) == b"\x6a\x00"
    assert frames.encode_envelope_batch_frame([]) == pb.WebSocketFrame(
        envelope_batch=pb.EnvelopeBatch()).SerializeToString()


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@given(count=INT32, threshold=INT32)
def test_prekey_status_frame_matches_upb(frames, count, threshold):
    expected = pb.WebSocketFrame(pre_key_status=pb.PreKeyStatus(
        one_time_pre_key_count=count, min_threshold=threshold)).SerializeToString()
    assert frames.encode_prekey_status_frame(count, threshold) == expected


@pytest.mark.parametrize("frames", FRAMES_TWINS)
def test_prekey_status_frame_examples(frames):
    # Spec §3.1: PreKeyStatus{count=0, threshold=20} writes field 2 only; the oneof tag always.
    assert frames.encode_prekey_status_frame(0, 20) == b"\x62\x02\x10\x14"
    assert frames.encode_prekey_status_frame(0, 0) == b"\x62\x00"
    assert frames.encode_prekey_status_frame(-1, -(1 << 31)) == pb.WebSocketFrame(
        pre_key_status=pb.PreKeyStatus(one_time_pre_key_count=-1,
                                       min_threshold=-(1 << 31))).SerializeToString()
    for bad, error in ((1 << 31, ValueError), (-(1 << 31) - 1, ValueError), (False, TypeError),
                       (0.5, TypeError), (None, TypeError)):
        with pytest.raises(error):
            frames.encode_prekey_status_frame(bad, 20)
        with pytest.raises(error):
            frames.encode_prekey_status_frame(20, bad)


FAILURE = st.tuples(st.binary(max_size=40), INT32 | st.integers(0, 4), st.text(max_size=60))


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@given(failures=st.lists(FAILURE, max_size=8), form=ANY_FORM)
def test_send_message_response_matches_upb(frames, failures, form):
    expected = pb.SendMessageResponse(failed_submissions=[
        pb.SendMessageResponse.FailedSubmission(submission_id=sid, error_code=code, error_message=text)
        for sid, code, text in failures]).SerializeToString()
    got = frames.encode_send_message_response([(form(sid), code, text) for sid, code, text in failures])
    assert type(got) is bytes
    assert got == expected


@pytest.mark.parametrize("frames", FRAMES_TWINS)
def test_send_message_response_examples(frames):
    assert frames.encode_send_message_response([]) == b""
    got = frames.encode_send_message_response(
        [(b"\x01" * 3, 3, "Invalid submission_id UUID bytes (expected 16)"), (b"", 0, "")])
    assert got == pb.SendMessageResponse(failed_submissions=[
        pb.SendMessageResponse.FailedSubmission(
            submission_id=b"\x01" * 3, error_code=3,
            error_message="Invalid submission_id UUID bytes (expected 16)"),
        pb.SendMessageResponse.FailedSubmission()]).SerializeToString()
    for bad, error in (((b"", 1, b"bytes"), TypeError), ((b"", 1, "\udc00"), UnicodeEncodeError),
                       ((b"", 1 << 31, "x"), ValueError), ((b"", 1), ValueError)):
        with pytest.raises(error):
            frames.encode_send_message_response([bad])


def _reference_split(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """Spec §3.4 step 5, literally: indexes per batch."""
    batches: list[list[int]] = [[]]
    total = 0
    for index, size in enumerate(sizes):
        if batches[-1] and total + size > max_bytes:
            batches.append([])
            total = 0
        batches[-1].append(index)
        total += size
    return [batch for batch in batches if batch]


@pytest.mark.parametrize("frames", FRAMES_TWINS)
@given(sizes=st.lists(st.integers(0, 50), max_size=30), max_bytes=st.integers(-3, 120))
def test_split_batches_follows_the_spec_rule(frames, sizes, max_bytes):
    envelopes = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    got = frames.split_batches(envelopes, max_bytes)
    assert [[e for e in batch] for batch in got] == [
        [envelopes[i] for i in batch] for batch in _reference_split(sizes, max_bytes)]
    for batch in got:
        assert batch and (len(batch) == 1 or sum(map(len, batch)) <= max_bytes)


@pytest.mark.parametrize("frames", FRAMES_TWINS)
def test_split_batches_examples(frames):
    a, b, c = b"a" * 5, b"b" * 5, b"c" * 20
    assert frames.split_batches([], 10) == []
    assert frames.split_batches([a, b], 10) == [[a, b]]              # exactly at the limit: together
    assert frames.split_batches([a, b, b"x"], 10) == [[a, b], [b"x"]]
    assert frames.split_batches([a, c, b], 10) == [[a], [c], [b]]    # oversized travels alone
    assert frames.split_batches([a, b], 1 << 70) == [[a, b]]
    assert frames.split_batches([a, b], -(1 << 70)) == [[a], [b]]
    with pytest.raises(TypeError):
        frames.split_batches([a], 1.5)
