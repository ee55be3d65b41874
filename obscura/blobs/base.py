"""The blob store interface, its errors, and the size rules every backend enforces while streaming."""

from __future__ import annotations

import abc
import datetime
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "BlobError", "BlobTooLarge", "BlobTooSmall", "BlobLengthMismatch", "BlobNotFound",
    "BlobUnavailable", "BlobMeta", "Blob", "BlobStore", "SizeLimiter", "validate_key", "put_bytes",
]


class BlobError(Exception):
    """Base of every blob store error. Callers map them to HTTP (413, 400, 404, 500, 503)."""


class BlobTooLarge(BlobError):
    """More bytes arrived than ``max_bytes`` allows (spec §6.1: abort as soon as max is exceeded)."""


class BlobTooSmall(BlobError):
    """The finished stream held fewer than ``min_bytes`` bytes; nothing was stored."""


class BlobLengthMismatch(BlobError):
    """The stream did not deliver exactly the declared ``content_length``; nothing was stored."""


class BlobNotFound(BlobError):
    """No object under that key."""


class BlobUnavailable(BlobError):
    """The backend failed (network, permissions, missing bucket, full disk). Never carries secrets."""


@dataclass(frozen=True, slots=True)
class BlobMeta:
    """What ``head`` knows about a stored object."""

    size: int
    last_modified: datetime.datetime | None
    content_type: str | None


class Blob:
    """A stored object being read: its size and type, and an async iterator over its bytes.

    The body is streamed in bounded chunks; iterate it once. ``aclose`` releases the underlying
    connection or file early when the reader stops before the end.
    """

    __slots__ = ("size", "content_type", "last_modified", "_chunks", "_map_error", "_closed")

    def __init__(
        self,
        size: int,
        content_type: str | None,
        chunks: AsyncIterator[bytes],
        *,
        last_modified: datetime.datetime | None = None,
        map_error: Callable[[Exception], BaseException] | None = None,
    ) -> None:
        self.size = size
        self.content_type = content_type
        self.last_modified = last_modified
        self._chunks: AsyncIterator[bytes] | None = chunks
        self._map_error = map_error
        self._closed = False

    def __aiter__(self) -> Blob:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            raise StopAsyncIteration
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except BlobError:
            raise
        except Exception as exc:
            await self.aclose()
            if self._map_error is None:
                raise
            raise self._map_error(exc) from None

    async def read_all(self) -> bytes:
        """The whole body in memory: only for small objects (tests, tiny backups)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        chunks, self._chunks = self._chunks, None
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


# Keys are built by the server (``attachments/<uuid>``, ``backups/<device>/v<n>``, spec §6.1,
# §6.2), never taken from a client. The check still keeps a bug from escaping the local folder.
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+,;:@~-]+")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``ValueError``."""
    if not key or len(key) > 1024:
        raise ValueError("blob key must be 1 to 1024 characters")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.fullmatch(segment):
            raise ValueError(f"invalid blob key segment {segment!r}")
    return key


class SizeLimiter:
    """Counts bytes while they stream and enforces min, max and a declared length.

    ``feed`` is called for each chunk and raises as soon as a limit is crossed; ``finish`` is
    called when the source is exhausted and raises if the total is too small or short.
    """

    __slots__ = ("min_bytes", "max_bytes", "content_length", "total")

    def __init__(self, *, min_bytes: int, max_bytes: int, content_length: int | None) -> None:
        if min_bytes < 0 or max_bytes < 0:
            raise ValueError("size limits must be non-negative")
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.content_length = content_length
        self.total = 0

    def precheck(self) -> None:
        """Reject a declared length before reading anything (spec §6.1 fast checks)."""
        if self.content_length is None:
            return
        if self.content_length > self.max_bytes:
            raise BlobTooLarge(f"declared {self.content_length} bytes, max {self.max_bytes}")
        if self.content_length < self.min_bytes:
            raise BlobTooSmall(f"declared {self.content_length} bytes, min {self.min_bytes}")

    def feed(self, chunk: bytes | bytearray | memoryview) -> int:
        n = chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)
        self.total += n
        if self.total > self.max_bytes:
            raise BlobTooLarge(f"more than {self.max_bytes} bytes")
        if self.content_length is not None and self.total > self.content_length:
            raise BlobLengthMismatch(f"more than the declared {self.content_length} bytes")
        return n

    def finish(self) -> int:
        if self.total < self.min_bytes:
            raise BlobTooSmall(f"{self.total} bytes, min {self.min_bytes}")
        if self.content_length is not None and self.total != self.content_length:
            raise BlobLengthMismatch(f"{self.total} bytes, declared {self.content_length}")
        return self.total


class BlobStore(abc.ABC):
    """Object storage for attachments and backups (spec §6.1, §6.2).

    Every method is safe to cancel. ``put_stream`` never leaves an object (nor a temp file)
    under its key when it fails for any reason, including cancellation.
    """

    #: What readiness failures name (``Storage connection failed for bucket <name>: ...``).
    name: str = "storage"

    @abc.abstractmethod
    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        min_bytes: int = 0,
        max_bytes: int,
        content_length: int | None = None,
        content_type: str | None = None,
    ) -> int:
        """Store the streamed body under ``key`` and return its size in bytes.

        Raises ``BlobTooLarge`` as soon as the running total exceeds ``max_bytes``,
        ``BlobTooSmall`` at the end if it is below ``min_bytes``, ``BlobLengthMismatch`` if a
        ``content_length`` was declared and not met, ``BlobUnavailable`` on a backend failure, and
        re-raises whatever the chunk iterator raises.
        """

    @abc.abstractmethod
    async def get_stream(self, key: str) -> Blob:
        """Open ``key`` for streaming. Raises ``BlobNotFound`` or ``BlobUnavailable``."""

    @abc.abstractmethod
    async def head(self, key: str) -> BlobMeta | None:
        """Metadata of ``key``, or ``None`` if there is no such object."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete ``key``; a missing key is not an error."""

    @abc.abstractmethod
    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key; missing keys are not an error."""

    async def list_keys(self, prefix: str, *, limit: int = 1000, after: str | None = None) -> list[str]:
        """The first ``limit`` keys, in key order, under the folder ``prefix`` (whole segments:
        ``a/b`` never matches ``a/bc/...``; ``""`` is the whole store) and greater than ``after``
        when given. Raises ``BlobUnavailable``. Used to delete a device's backups and to sweep
        orphaned ones (decisions §4.5)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def check(self) -> None:
        """Cheap readiness probe (spec §2.15). Raises ``BlobUnavailable`` with the message
        ``Storage connection failed for bucket <name>: <reason>``. The caller applies the timeout.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold no resources
        """Release backend resources."""


async def put_bytes(store: BlobStore, key: str, data: bytes, **limits: int) -> int:
    """Store a small in-memory body (tests, internal callers) through ``put_stream``."""

    async def one() -> AsyncIterator[bytes]:
        yield data

    limits.setdefault("max_bytes", len(data))
    return await store.put_stream(key, one(), **limits)

