"""Frame codec micro-benchmarks: compiled twin ("c"), pure-Python twin ("py") and upb, per operation.

Run: .venv/bin/pytest bench/bench_frames.py --benchmark-group-by=group --benchmark-columns=min,median,ops
(style.md §13; issue 8 goal: compiled at least 3x its Python twin.) The upb rows use the generated
classes the way a server without this codec would: build or parse messages, then serialize.
"""

import pytest

from obscura import _speedups
from obscura._proto import obscura_pb2 as pb

TWINS = [pytest.param(m, id=k) for k, m in _speedups.implementations("frames").items()]

ENVELOPE_FIELDS = [(bytes([i]) * 16, b"s" * 16, 1_700_000_000_000 + i, b"m" * 200, b"d" * 16)
                   for i in range(50)]
ENVELOPES = [_speedups.encode_envelope(*fields) for fields in ENVELOPE_FIELDS]
ACK_100 = pb.WebSocketFrame(ack=pb.AckMessage(
    message_ids=[i.to_bytes(16, "big") for i in range(100)])).SerializeToString()
SEND_3 = pb.SendMessageRequest(messages=[
    pb.SendMessageRequest.Submission(submission_id=bytes([i]) * 16, device_id=b"d" * 16,
                                     message=b"m" * 300) for i in range(3)]).SerializeToString()


@pytest.mark.benchmark(group="encode EnvelopeBatch frame of 50 pre-encoded envelopes")
@pytest.mark.parametrize("twin", TWINS)
def test_batch_frame(benchmark, twin):
    frame = benchmark(twin.encode_envelope_batch_frame, ENVELOPES)
    assert len(frame) > 50 * 250


@pytest.mark.benchmark(group="encode EnvelopeBatch frame of 50 pre-encoded envelopes")
def test_batch_frame_upb(benchmark):
    messages = [pb.Envelope(id=i, sender_id=s, timestamp=t, message=m, sender_device_id=d)
                for i, s, t, m, d in ENVELOPE_FIELDS]

    def upb():
        return pb.WebSocketFrame(envelope_batch=pb.EnvelopeBatch(envelopes=messages)).SerializeToString()

    assert benchmark(upb) == _speedups.encode_envelope_batch_frame(ENVELOPES)


@pytest.mark.benchmark(group="encode one Envelope")
@pytest.mark.parametrize("twin", TWINS)
def test_envelope(benchmark, twin):
    assert benchmark(twin.encode_envelope, *ENVELOPE_FIELDS[0]) == ENVELOPES[0]


@pytest.mark.benchmark(group="encode one Envelope")
def test_envelope_upb(benchmark):
    i, s, t, m, d = ENVELOPE_FIELDS[0]

    def upb():
        return pb.Envelope(id=i, sender_id=s, timestamp=t, message=m, sender_device_id=d).SerializeToString()

    assert benchmark(upb) == ENVELOPES[0]


@pytest.mark.benchmark(group="decode ack frame of 100 ids")
@pytest.mark.parametrize("twin", TWINS)
def test_ack(benchmark, twin):
    kind, ids = benchmark(twin.decode_client_frame, ACK_100)
    assert kind == "ack" and len(ids) == 100


@pytest.mark.benchmark(group="decode ack frame of 100 ids")
def test_ack_upb(benchmark):
    def upb():
        frame = pb.WebSocketFrame.FromString(ACK_100)
        return frame.WhichOneof("payload"), list(frame.ack.message_ids)

    kind, ids = benchmark(upb)
    assert kind == "ack" and len(ids) == 100


@pytest.mark.benchmark(group="decode SendMessageRequest of 3 submissions")
@pytest.mark.parametrize("twin", TWINS)
def test_send_request(benchmark, twin):
    assert len(benchmark(twin.decode_send_message_request, SEND_3)) == 3


@pytest.mark.benchmark(group="decode SendMessageRequest of 3 submissions")
def test_send_request_upb(benchmark):
    def upb():
        request = pb.SendMessageRequest.FromString(SEND_3)
        return [(s.submission_id, s.device_id, s.message) for s in request.messages]

    assert benchmark(upb) == _speedups.decode_send_message_request(SEND_3)


@pytest.mark.benchmark(group="encode PreKeyStatus frame")
@pytest.mark.parametrize("twin", TWINS)
def test_prekey_status(benchmark, twin):
    assert benchmark(twin.encode_prekey_status_frame, 3, 20) == b"\x62\x04\x08\x03\x10\x14"


@pytest.mark.benchmark(group="encode PreKeyStatus frame")
def test_prekey_status_upb(benchmark):
    def upb():
        return pb.WebSocketFrame(pre_key_status=pb.PreKeyStatus(
            one_time_pre_key_count=3, min_threshold=20)).SerializeToString()

    assert benchmark(upb) == b"\x62\x04\x08\x03\x10\x14"
