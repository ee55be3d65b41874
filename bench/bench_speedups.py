"""Micro-benchmarks of the speedups twins: one row per implementation (compiled "c" vs "py").

Run: .venv/bin/pytest bench/bench_speedups.py --benchmark-group-by=group --benchmark-columns=min,mean,median,ops
(style.md §13; decisions.md §2: a compiled module stays only where these rows show a real gain.)
"""

import pytest

from obscura import _speedups

WIRE = [pytest.param(m, id=k) for k, m in _speedups.implementations("wire").items()]
UUID7 = [pytest.param(m, id=k) for k, m in _speedups.implementations("uuid7").items()]

UINT64_MAX_VARINT = b"\xff" * 9 + b"\x01"


def _ack_frame(count: int) -> bytes:
    """A WebSocketFrame{ack} with `count` 16-byte ids, as the gateway receives it (spec §3.5)."""
    inner = b"".join(b"\x0a\x10" + bytes([i % 256]) * 16 for i in range(count))
    return b"\x5a" + _speedups.encode_varint(len(inner)) + inner


def _walk_ack(wire, frame) -> int:
    reader = wire.WireReader(frame)
    reader.read_tag()
    start, end = reader.read_length_delimited()
    reader.seek(start)
    ids = 0
    while reader.pos < end:
        reader.read_tag()
        reader.read_length_delimited()
        ids += 1
    return ids


@pytest.mark.benchmark(group="decode_varint 1 byte")
@pytest.mark.parametrize("wire", WIRE)
def test_decode_varint_1_byte(benchmark, wire):
    assert benchmark(wire.decode_varint, b"\x05", 0) == (5, 1)


@pytest.mark.benchmark(group="decode_varint 10 bytes")
@pytest.mark.parametrize("wire", WIRE)
def test_decode_varint_10_bytes(benchmark, wire):
    assert benchmark(wire.decode_varint, UINT64_MAX_VARINT, 0) == ((1 << 64) - 1, 10)


@pytest.mark.benchmark(group="encode_varint 1 byte")
@pytest.mark.parametrize("wire", WIRE)
def test_encode_varint_1_byte(benchmark, wire):
    assert benchmark(wire.encode_varint, 20) == b"\x14"


@pytest.mark.benchmark(group="encode_varint 6 bytes (ms timestamp)")
@pytest.mark.parametrize("wire", WIRE)
def test_encode_varint_timestamp(benchmark, wire):
    assert len(benchmark(wire.encode_varint, 1_700_000_000_000)) == 6


@pytest.mark.benchmark(group="encode_bytes_field 16-byte id")
@pytest.mark.parametrize("wire", WIRE)
def test_encode_bytes_field(benchmark, wire):
    assert len(benchmark(wire.encode_bytes_field, 1, bytes(16))) == 18


@pytest.mark.benchmark(group="WireReader: walk an ACK frame of 100 ids")
@pytest.mark.parametrize("wire", WIRE)
def test_walk_ack_frame(benchmark, wire):
    frame = _ack_frame(100)
    assert benchmark(_walk_ack, wire, frame) == 100


@pytest.mark.benchmark(group="uuid7()")
@pytest.mark.parametrize("twin", UUID7)
def test_uuid7(benchmark, twin):
    assert benchmark(twin.uuid7).version == 7


@pytest.mark.benchmark(group="uuid7_bytes()")
@pytest.mark.parametrize("twin", UUID7)
def test_uuid7_bytes(benchmark, twin):
    assert len(benchmark(twin.uuid7_bytes)) == 16
