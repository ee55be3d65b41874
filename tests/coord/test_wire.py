"""Byte formats and parsing rules shared with upstream nodes (spec §1.5, §14)."""

from __future__ import annotations

import uuid

import pytest

from obscura.coord import Event
from obscura.coord.redis import RedisCoordinator
from obscura.coord.wire import (
    channel_name,
    channel_pattern,
    decode_event,
    encode_event,
    member,
    parse_device_id,
)
from tests.coord.support import coord_settings

DEVICE = uuid.UUID("0190f3c2-1234-7abc-8def-0123456789ab")


def test_event_values_are_the_wire_bytes() -> None:
    assert [int(e) for e in Event] == [1, 2, 3]
    assert [encode_event(e) for e in Event] == [b"\x01", b"\x02", b"\x03"]
    assert [encode_event(int(e)) for e in Event] == [b"\x01", b"\x02", b"\x03"]
    for unknown in (0, 4, 255, -1):
        with pytest.raises(ValueError):
            encode_event(unknown)


@pytest.mark.parametrize(("payload", "expected"), [
    (b"\x01", 1), (b"\x02", 2), (b"\x03", 3), (b"\x01\x02", 1),
    (b"", None), (b"\x00", None), (b"\x04", None), (b"\xff", None), (b"1", None),
])
def test_decode_event(payload: bytes, expected: int | None) -> None:
    assert decode_event(payload) == expected


def test_names_are_lower_case_hyphenated() -> None:
    upper = uuid.UUID(str(DEVICE).upper())
    assert member(upper) == "0190f3c2-1234-7abc-8def-0123456789ab"
    assert channel_name("user:", upper) == "user:0190f3c2-1234-7abc-8def-0123456789ab"


@pytest.mark.parametrize(("prefix", "pattern"), [
    ("user:", "user:*"), ("a*b?", "a\\*b\\?*"), ("x[1]\\", "x\\[1\\]\\\\*"), ("", "*"),
])
def test_channel_pattern_escapes_glob_characters(prefix: str, pattern: str) -> None:
    assert channel_pattern(prefix) == pattern


@pytest.mark.parametrize("text", [
    str(DEVICE), str(DEVICE).upper(), DEVICE.hex, f"{{{DEVICE}}}", f"urn:uuid:{DEVICE}",
    f"URN:UUID:{DEVICE}",
])
def test_parse_device_id_accepts_rust_forms(text: str) -> None:
    assert parse_device_id(text) == DEVICE


@pytest.mark.parametrize("text", [
    "", "nope", str(DEVICE)[:-1], str(DEVICE) + "0", str(DEVICE).replace("-", "", 1) + "0",
    "0190f3c21234-7abc-8def-0123456789ab-", DEVICE.hex[:-1] + "g", f"{{{DEVICE.hex}}}",
    f"urn:uuid:{DEVICE.hex}", f" {DEVICE.hex}", "+190f3c2-1234-7abc-8def-0123456789ab",
    "0190f3c2-1234-7abc-8def-0123456789a\u0661",
])
def test_parse_device_id_rejects_everything_else(text: str) -> None:
    assert parse_device_id(text) is None


def test_backoff_grows_and_is_capped() -> None:
    coord = RedisCoordinator(coord_settings(pubsub_min_backoff_secs=1, pubsub_max_backoff_secs=30),
                             "redis://127.0.0.1:1/0")
    delays = [coord._backoff_s(n) for n in range(12)]
    assert all(1 <= d <= 30 for d in delays)
    assert delays[0] <= 1 and delays[4] >= 12 and delays[-1] >= 22.5
    assert coord._backoff_s(10_000) <= 30
    fast = RedisCoordinator(coord_settings(pubsub_min_backoff_secs=0, pubsub_max_backoff_secs=1),
                            "redis://127.0.0.1:1/0")
    assert 0 < fast._backoff_s(0) <= 0.05 and fast._backoff_s(50) <= 1
