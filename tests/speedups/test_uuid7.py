"""UUIDv7 in both twins: RFC 9562 layout, monotonic order, the fake-clock rules, time extraction."""

import os
import pickle
import time
import uuid

import pytest

from tests.speedups.twins import UUID7_TWINS

COUNTER_MAX = (1 << 42) - 1


@pytest.fixture(autouse=True)
def fresh_state():
    """Tests that move the clock leave the generator as a fresh process would have it."""
    for param in UUID7_TWINS:
        param.values[0]._set_state(-1, 0)
    yield
    for param in UUID7_TWINS:
        param.values[0]._set_state(-1, 0)


def _counter(value: int) -> int:
    """The 42-bit counter: rand_a (12 bits) then the top 30 bits of rand_b."""
    return (((value >> 64) & 0xFFF) << 30) | ((value >> 32) & 0x3FFFFFFF)


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_layout_version_and_variant(twin):
    u = twin.uuid7()
    assert isinstance(u, uuid.UUID)
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert (u.int >> 76) & 0xF == 7 and (u.int >> 62) & 0b11 == 0b10
    raw = twin.uuid7_bytes()
    assert type(raw) is bytes and len(raw) == 16
    assert raw[6] >> 4 == 7 and raw[8] >> 6 == 0b10
    value = twin.uuid7_int()
    assert uuid.UUID(int=value).version == 7


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_uuid_objects_behave_like_stdlib_ones(twin):
    u = twin.uuid7()
    same = uuid.UUID(str(u))
    assert u == same and hash(u) == hash(same) and u.bytes == same.bytes
    assert u.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(u)) == u
    with pytest.raises(TypeError):
        u.int = 5  # still immutable


@pytest.mark.parametrize("twin", UUID7_TWINS)
@pytest.mark.parametrize("form", ["bytes", "uuid", "str"])
def test_monotonic_across_100k_ids(twin, form):
    if form == "bytes":
        ids = [twin.uuid7_bytes() for _ in range(100_000)]
    elif form == "uuid":
        ids = [twin.uuid7() for _ in range(100_000)]
    else:
        ids = [str(twin.uuid7()) for _ in range(100_000)]
    assert all(a < b for a, b in zip(ids, ids[1:])), "ids must be strictly increasing"


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_time_extraction(twin):
    before_ms = time.time_ns() // 1_000_000
    u = twin.uuid7()
    after_ms = time.time_ns() // 1_000_000
    assert before_ms <= twin.uuid7_time_ms(u) <= after_ms
    assert twin.uuid7_time_ms(u.bytes) == twin.uuid7_time_ms(u.int) == twin.uuid7_time_ms(u)
    assert twin.uuid7_time_ms(bytearray(u.bytes)) == twin.uuid7_time_ms(u)
    for bad in (uuid.uuid4(), uuid.UUID(int=0), uuid.uuid1(), -1, 1 << 128):
        with pytest.raises(ValueError):
            twin.uuid7_time_ms(bad)
    with pytest.raises(ValueError):
        twin.uuid7_time_ms(u.bytes[:15])


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_same_millisecond_counts_up_from_a_random_seed(twin):
    first = twin._int_at(1_000)
    second = twin._int_at(1_000)
    assert first >> 80 == second >> 80 == 1_000
    assert _counter(second) == _counter(first) + 1
    assert _counter(first) < 1 << 41, "a fresh seed keeps the top counter bit clear"
    seeds = {_counter(twin._int_at(ms)) for ms in range(2_000, 2_050)}
    assert len(seeds) > 45, "each new millisecond re-seeds the counter randomly"


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_clock_going_backwards_keeps_order(twin):
    a = twin._int_at(5_000)
    b = twin._int_at(4_000)  # the clock stepped back a second
    c = twin._int_at(4_999)
    assert a < b < c
    assert b >> 80 == c >> 80 == 5_000
    d = twin._int_at(5_001)
    assert c < d and d >> 80 == 5_001


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_counter_overflow_advances_the_timestamp(twin):
    twin._set_state(7_000, COUNTER_MAX - 1)
    last_in_ms = twin._int_at(7_000)
    assert _counter(last_in_ms) == COUNTER_MAX and last_in_ms >> 80 == 7_000
    overflowed = twin._int_at(7_000)
    assert overflowed >> 80 == 7_001 and overflowed > last_in_ms
    assert _counter(overflowed) < 1 << 41
    assert twin._get_state() == (7_001, _counter(overflowed))


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_timestamp_is_48_bits(twin):
    value = twin._int_at((1 << 48) - 1)
    assert value >> 80 == (1 << 48) - 1
    assert uuid.UUID(int=value).version == 7


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_random_bits_differ_between_ids(twin):
    tails = {twin.uuid7_int() & 0xFFFFFFFF for _ in range(2_000)}
    assert len(tails) > 1_990  # 32 fresh random bits each


@pytest.mark.parametrize("twin", UUID7_TWINS)
def test_forked_child_drops_pool_and_counter(twin):
    twin.uuid7()  # the parent has state and a pool
    assert twin._get_state()[0] >= 0
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its state right after the fork, then one id
        try:
            os.write(write_fd, repr(twin._get_state()).encode() + b"|" + twin.uuid7_bytes())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    state, child_id = report.split(b"|", 1)
    assert state == b"(-1, 0)"
    assert len(child_id) == 16 and child_id != twin.uuid7_bytes()
