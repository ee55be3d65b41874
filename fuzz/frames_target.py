"""Fuzz target for the frame codec: both twins against upb, and against each other (style.md §14).

Run:   mkdir -p /tmp/frames-corpus && .venv/bin/python fuzz/frames_target.py /tmp/frames-corpus \
           fuzz/corpus/frames -atheris_runs=200000
(new inputs go to the first folder, the committed seeds are read from the second). The pure-Python
twin is instrumented for coverage; the compiled one runs beside it as a differential oracle. A crash
writes crash-<hash>; commit it under fuzz/corpus/frames/ and tests/speedups/test_frames_fuzz.py
replays every file there through check().
"""


from google.protobuf.message import DecodeError as UpbDecodeError

from obscura._proto import obscura_pb2 as pb
from obscura._speedups import DecodeError, implementations


def _upb_frame(data: bytes):
    try:
        frame = pb.WebSocketFrame.FromString(data)
    except UpbDecodeError:
        return "refused"
    which = frame.WhichOneof("payload")
    if which == "ack":
        return ("ack", list(frame.ack.message_ids))
    return ("none", None) if which is None else ("other", which)


def _upb_request(data: bytes):
    try:
        request = pb.SendMessageRequest.FromString(data)
    except UpbDecodeError:
        return "refused"
    return [(s.submission_id, s.device_id, s.message) for s in request.messages]


def _outcome(decode, data):
    try:
        return decode(data)
    except DecodeError as exc:
        return ("refused", str(exc))


def _plain(outcome):
    return "refused" if isinstance(outcome, tuple) and outcome[0] == "refused" else outcome


# Imported here, not on the first check(): atheris instruments only the code loaded before the
# fuzzer starts, and a twin first imported inside check() ran without coverage guidance.
TWINS = implementations("frames")


def check(data: bytes) -> None:
    """Raise AssertionError when a twin disagrees with upb or with the other twin."""
    twins = TWINS
    for decode_name, oracle in (("decode_client_frame", _upb_frame),
                                ("decode_send_message_request", _upb_request)):
        expected = oracle(data)
        outcomes = {name: _outcome(getattr(twin, decode_name), data) for name, twin in twins.items()}
        for name, got in outcomes.items():
            assert _plain(got) == expected, (decode_name, name, got, expected)
            got_view = _outcome(getattr(twins[name], decode_name), memoryview(bytearray(data)))
            assert got_view == got, (decode_name, name, "memoryview")
        assert len({repr(o) for o in outcomes.values()}) == 1, (decode_name, outcomes)
    # The input spliced as two envelopes: a frame upb reads iff it reads both halves as Envelopes.
    half = len(data) // 2
    pieces = [data[:half], data[half:]]
    for twin in twins.values():
        frame = twin.encode_envelope_batch_frame(pieces)
        try:
            for piece in pieces:
                pb.Envelope.FromString(piece)
            expected = ("other", "envelope_batch")
        except UpbDecodeError:
            expected = "refused"
        assert _plain(_outcome(twin.decode_client_frame, frame)) == expected == _upb_frame(frame)


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    run_fuzzer(check)


if __name__ == "__main__":
    main()
