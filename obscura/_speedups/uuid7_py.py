"""RFC 9562 UUIDv7 ids, monotonic within a process (decisions.md §4.10): the pure-Python twin.

Single-source twin (style.md §4): Cython compiles this same file with ``uuid7_c.pxd`` into
``obscura._speedups.uuid7_c``. Keep it plain Python: no ``import cython``, no argument
annotations (Cython would read them as C types).

Layout (RFC 9562 §5.7): 48-bit unix_ts_ms | ver=7 (4) | rand_a (12) | var=0b10 (2) | rand_b (62).
Monotonicity uses RFC 9562 §6.2 method 1 (fixed-length dedicated counter), like CPython 3.14's
``uuid.uuid7``: a 42-bit counter fills rand_a and the top 30 bits of rand_b, the low 32 bits of
rand_b are fresh random bits. The counter is re-seeded randomly (top bit clear, so there are 2**41
increments of headroom) whenever the millisecond advances, and incremented otherwise. If the clock
goes backwards the last timestamp is reused; if the counter overflows, the timestamp is advanced by
one millisecond (§6.2). So ids from one process sort (as UUIDs, bytes or strings) in generation
order. Used from the event-loop thread; other threads still get unique ids, order across threads
is not promised.

Randomness comes from os.urandom in 4 KiB batches (one syscall per ~400 ids); the pool and the
counter are dropped in a forked child, so parent and child never share random bytes.
"""

import os
import struct
import time
import uuid

__all__ = ["uuid7", "uuid7_bytes", "uuid7_int", "uuid7_time_ms"]

_POOL_BYTES = 4096
_COUNTER_MAX = (1 << 42) - 1
_pack_u64_pair = struct.Struct(">QQ").pack
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_UUID = uuid.UUID
_new_object = object.__new__
_set_slot = object.__setattr__

_pool = b""
_pool_pos = 0
_last_ms = -1
_counter = 0
_high = 0  # the halves of the id _advance() made last: globals, not a tuple, to skip an allocation
_low = 0
_time_ns = time.time_ns


def _random_bits(count):
    """The next ``count`` bytes of the random pool as a big-endian unsigned int."""
    global _pool, _pool_pos
    pos = _pool_pos
    if pos + count > len(_pool):
        _pool = os.urandom(_POOL_BYTES)
        pos = 0
    value = 0
    for i in range(count):
        value = (value << 8) | _pool[pos + i]
    _pool_pos = pos + count
    return value


def _advance(now_ms):
    """Advance the monotonic state for a clock reading; leave the new id's halves in _high/_low."""
    global _last_ms, _counter, _high, _low
    if now_ms > _last_ms:
        _last_ms = now_ms
        _counter = _random_bits(6) & 0x1FFFFFFFFFF  # 41 random bits: top counter bit clear
    else:
        # Same millisecond, or the clock went backwards: keep the last timestamp, count up.
        _counter += 1
        if _counter > _COUNTER_MAX:
            _last_ms += 1
            _counter = _random_bits(6) & 0x1FFFFFFFFFF
    tail = _random_bits(4)
    _high = ((_last_ms & 0xFFFFFFFFFFFF) << 16) | 0x7000 | (_counter >> 30)
    _low = 0x8000000000000000 | ((_counter & 0x3FFFFFFF) << 32) | tail


def _now_ms():
    return _time_ns() // 1000000


def _int_at(now_ms):
    """The next UUIDv7 as a 128-bit int for the given clock reading (tests feed a fake clock)."""
    _advance(now_ms)
    value = _high  # a Python int before shifting: ``_high`` is a C uint64 in the compiled twin
    return (value << 64) | _low


def uuid7_int():
    """The next UUIDv7 as a 128-bit int."""
    return _int_at(_now_ms())


def uuid7_bytes():
    """The next UUIDv7 as its 16-byte big-endian form (the cheapest form: no UUID object)."""
    _advance(_now_ms())
    return _pack_u64_pair(_high, _low)


def uuid7():
    """The next UUIDv7 as a uuid.UUID."""
    value = _int_at(_now_ms())
    # UUID(int=...) re-validates an int we built ourselves; set the slots directly, as CPython
    # 3.14's UUID._from_int does. UUID is immutable only through its own __setattr__.
    result = _new_object(_UUID)
    _set_slot(result, "int", value)
    _set_slot(result, "is_safe", _SAFE_UNKNOWN)
    return result


def uuid7_time_ms(u):
    """The unix timestamp in ms stored in a UUIDv7 (uuid.UUID, 16 bytes or an int)."""
    if isinstance(u, uuid.UUID):
        value = u.int
    elif isinstance(u, int):
        value = u
    else:
        raw = bytes(u)
        if len(raw) != 16:
            raise ValueError(f"a UUID has 16 bytes, not {len(raw)}")
        value = int.from_bytes(raw, "big")
    if value < 0 or value >> 128 or (value >> 76) & 0xF != 7 or (value >> 62) & 0x3 != 2:
        raise ValueError("not an RFC 9562 UUIDv7")
    return value >> 80


def _reset_after_fork():
    """Forget the random pool and the counter in a forked child (never reuse the parent's bytes)."""
    global _pool, _pool_pos, _last_ms, _counter
    _pool = b""
    _pool_pos = 0
    _last_ms = -1
    _counter = 0


def _set_state(last_ms, counter):
    """Test hook: position the monotonic state (e.g. just below counter overflow)."""
    global _last_ms, _counter
    _last_ms = last_ms
    _counter = counter


def _get_state():
    """Test hook: (last_ms, counter)."""
    return _last_ms, _counter


os.register_at_fork(after_in_child=_reset_after_fork)
