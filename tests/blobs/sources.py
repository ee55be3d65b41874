"""Chunk sources for the blob tests: deterministic bodies that record how much was pulled."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

MiB = 1024 * 1024


class SourceFailed(Exception):
    """What a faulty source raises (stands in for a client that disconnects mid-body)."""


class Source:
    """Yields ``total`` pseudo-random bytes in chunks of ``chunk_bytes`` (or random sizes).

    ``fail_after_bytes`` raises SourceFailed once that much was yielded; ``block_after_bytes``
    waits forever (until cancelled) once that much was yielded. ``pulled`` counts bytes handed out.
    """

    def __init__(self, total: int, chunk_bytes: int = 64 * 1024, *, seed: int = 1,
                 random_sizes: bool = False, fail_after_bytes: int | None = None,
                 block_after_bytes: int | None = None) -> None:
        self.total = total
        self.chunk_bytes = chunk_bytes
        self.random_sizes = random_sizes
        self.fail_after_bytes = fail_after_bytes
        self.block_after_bytes = block_after_bytes
        self.pulled = 0
        self.chunks = 0
        self.blocked = asyncio.Event()
        self._rng = random.Random(seed)
        self._sha = hashlib.sha256()

    @property
    def digest(self) -> str:
        return self._sha.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            if self.fail_after_bytes is not None and self.pulled >= self.fail_after_bytes:
                raise SourceFailed("client went away")
            if self.block_after_bytes is not None and self.pulled >= self.block_after_bytes:
                self.blocked.set()
                await asyncio.Event().wait()
            size = self._rng.randint(1, 2 * self.chunk_bytes) if self.random_sizes else self.chunk_bytes
            chunk = self._rng.randbytes(min(size, self.total - self.pulled))
            self._sha.update(chunk)
            self.pulled += len(chunk)
            self.chunks += 1
            yield chunk
            await asyncio.sleep(0)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def digest_of(blob: AsyncIterator[bytes]) -> tuple[str, int, int]:
    """(sha256 hex, total bytes, largest chunk) of a streamed blob."""
    sha, total, largest = hashlib.sha256(), 0, 0
    async for chunk in blob:
        sha.update(chunk)
        total += len(chunk)
        largest = max(largest, len(chunk))
    return sha.hexdigest(), total, largest
