"""Fuzz target for the lean RESP client's reply parser (obscura.coord.resp).

Bytes from Redis are trusted less than they look: a proxy, a foreign server on the configured port
or a broken link can send anything. The parser may only return replies or raise
RespProtocolError (the connection is then closed); it never raises anything else, never loops,
and reads the same replies whichever way the bytes are split. The first byte picks the split.

Run:   .venv/bin/python fuzz/resp_target.py /tmp/resp-corpus fuzz/corpus/resp -max_total_time=600
"""

from __future__ import annotations

import asyncio

from obscura.coord.resp import Incomplete, RespError, RespProtocol, RespProtocolError, parse_reply

__all__ = ["check"]

_loop = asyncio.new_event_loop()


class _Transport:
    """Just enough of a transport for RespProtocol.abort(): records that the link was closed."""

    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def _plain(value: object) -> object:
    """Comparable replies: errors (nested in arrays too) as ("error", text)."""
    if isinstance(value, RespError):
        return ("error", str(value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _whole(data: bytes) -> tuple[list[object], bool]:
    """Replies of the whole buffer at once, and whether the stream turned out malformed."""
    out: list[object] = []
    pos = 0
    try:
        while pos < len(data):
            value, end = parse_reply(data, pos)
            assert end > pos, "a reply consumed no bytes"
            out.append(_plain(value))
            pos = end
    except Incomplete:
        pass
    except RespProtocolError:
        return out, True
    return out, False


def check(data: bytes) -> None:
    """Raise AssertionError when the parser misbehaves on ``data``."""
    if not data:
        return
    step, stream = data[0] % 17 + 1, data[1:]
    expected, malformed = _whole(stream)
    got: list[object] = []
    proto = RespProtocol(_loop, on_push=lambda v: got.append(_plain(v)))
    transport = _Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    for i in range(0, len(stream), step):
        if transport.aborted:
            break
        proto.data_received(stream[i:i + step])
    assert transport.aborted == malformed, "a malformed stream was not closed (or a good one was)"
    if not malformed:
        assert got == expected, "split reads disagree with one read"
    else:
        assert got == expected[:len(got)], "replies before the malformed one differ"


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    run_fuzzer(check)


if __name__ == "__main__":
    main()
