"""Raw-socket HTTP helpers for hostile requests httpx refuses to send."""

from __future__ import annotations

import asyncio
import re

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


async def exchange(port: int, data: bytes, *, timeout_s: float = 10) -> bytes:
    """Send ``data``, half-close, and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(-1), timeout_s)
    finally:
        writer.close()


def statuses(raw: bytes) -> list[int]:
    """Status codes of every response in ``raw`` (a smuggled request shows up as an extra one)."""
    return [int(m.group(1)) for m in _STATUS.finditer(raw)]
