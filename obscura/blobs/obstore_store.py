"""BlobStore on obstore: one streaming implementation shared by the S3, local and memory backends."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import obstore
from obstore.exceptions import BaseError as _ObstoreError
from obstore.exceptions import NotFoundError as _ObstoreNotFound

from obscura.blobs.base import (
    Blob, BlobMeta, BlobNotFound, BlobStore, BlobUnavailable, SizeLimiter, validate_key,
)

__all__ = ["ObstoreBlobStore"]

_NOT_FOUND = (FileNotFoundError, _ObstoreNotFound)
_MiB = 1024 * 1024


class _Aborted(Exception):
    """Raised into obstore's read loop so it aborts the upload (S3: AbortMultipartUpload)."""


async def _next_chunk(source: AsyncIterator[Any], limiter: SizeLimiter) -> bytes | None:
    """The next non-empty chunk, counted against the limits; ``None`` once the source is done."""
    while True:
        try:
            chunk = await source.__anext__()
        except StopAsyncIteration:
            limiter.finish()
            return None
        if limiter.feed(chunk):
            # obstore keeps a zero-copy reference until the part is sent: a bytearray or a view of
            # a reused read buffer would change under it, so only immutable bytes pass through.
            return chunk if isinstance(chunk, bytes) else bytes(chunk)


async def _bounded(stream: AsyncIterator[bytes], max_chunk_bytes: int) -> AsyncIterator[bytes]:
    """Re-slice oversized chunks: MemoryStore hands back a whole object as one chunk."""
    async for chunk in stream:
        if len(chunk) <= max_chunk_bytes:
            yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(chunk), max_chunk_bytes):
            yield bytes(view[start:start + max_chunk_bytes])


class _Feeder:
    """The async iterator obstore pulls a multipart upload from.

    It first replays the chunks already buffered, then reads the caller's source through the
    size limiter. Whatever it raises makes obstore abort the upload; ``error`` keeps it so
    ``put_stream`` re-raises the caller's own exception rather than obstore's wrapping.
    """

    def __init__(self, buffered: list[bytes], source: AsyncIterator[Any], limiter: SizeLimiter) -> None:
        self._buffered = deque(buffered)
        self._source = source
        self._limiter = limiter
        self._finished = False
        self._aborted = False
        self._reader: asyncio.Task[Any] | None = None
        self.error: BaseException | None = None

    def __aiter__(self) -> _Feeder:
        return self

    async def __anext__(self) -> bytes:
        if self._aborted:
            raise _Aborted()
        if self._buffered:
            return self._buffered.popleft()
        if self._finished:
            raise StopAsyncIteration
        # obstore runs each __anext__ in its own task on our loop; keep it so abort() can stop
        # a read that is waiting on a slow client.
        self._reader = asyncio.current_task()
        try:
            chunk = await _next_chunk(self._source, self._limiter)
        except BaseException as exc:
            if not self._aborted:
                self.error = exc
            raise
        finally:
            self._reader = None
        if chunk is None:
            self._finished = True
            raise StopAsyncIteration
        return chunk

    def abort(self) -> None:
        self._aborted = True
        if self._reader is not None:
            self._reader.cancel()


class ObstoreBlobStore(BlobStore):
    """Streams blobs through an obstore store (``S3Store``, ``LocalStore`` or ``MemoryStore``).

    Bodies up to ``part_size_bytes`` go up in one request; larger ones as a multipart upload
    of ``part_size_bytes`` parts with at most ``max_concurrency`` in flight, so memory stays near
    ``part_size_bytes * (max_concurrency + 2)`` whatever the body size.
    """

    def __init__(
        self,
        store: Any,
        *,
        name: str,
        supports_attributes: bool = True,
        bulk_delete_ignores_missing: bool = True,
        sorted_listing: bool = True,
        part_size_bytes: int = 5 * _MiB,
        max_concurrency: int = 2,
        read_chunk_bytes: int = 256 * 1024,
        abort_timeout_s: float = 10.0,
        secrets: Sequence[str] = (),
    ) -> None:
        # S3 rejects multipart parts under 5 MiB (except the last one).
        if part_size_bytes < 5 * _MiB:
            raise ValueError("part_size_bytes must be at least 5 MiB")
        self._store = store
        self.name = name
        self._supports_attributes = supports_attributes
        self._bulk_delete_ignores_missing = bulk_delete_ignores_missing
        self._sorted_listing = sorted_listing  # S3 and memory list in key order, a folder walk does not
        self._part_size_bytes = part_size_bytes
        self._max_concurrency = max_concurrency
        self._read_chunk_bytes = read_chunk_bytes
        self._abort_timeout_s = abort_timeout_s
        # Redacting very short strings would garble every message; real keys are 16+ characters.
        self._secrets = tuple(s for s in secrets if len(s) >= 4)

    # -- writing -----------------------------------------------------------------------------
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
        validate_key(key)
        limiter = SizeLimiter(min_bytes=min_bytes, max_bytes=max_bytes, content_length=content_length)
        limiter.precheck()
        source = aiter(chunks)
        attributes = {"Content-Type": content_type} if content_type and self._supports_attributes else None
        # Buffer up to one part first: a body that fits (every backup, most attachments) is
        # stored with a single PUT, cheaper than a multipart upload and never left half-done.
        buffered, size, exhausted = [], 0, False
        while size < self._part_size_bytes:
            chunk = await _next_chunk(source, limiter)
            if chunk is None:
                exhausted = True
                break
            buffered.append(chunk)
            size += len(chunk)
        if exhausted:
            body = b"".join(buffered)
            buffered.clear()
            fut = obstore.put_async(self._store, key, body, attributes=attributes, use_multipart=False)
            await self._await_put(key, fut, None)
        else:
            feeder = _Feeder(buffered, source, limiter)
            buffered = []
            fut = obstore.put_async(
                self._store, key, feeder, attributes=attributes, use_multipart=True,
                chunk_size=self._part_size_bytes, max_concurrency=self._max_concurrency,
            )
            await self._await_put(key, fut, feeder)
        return limiter.total

    async def _await_put(self, key: str, fut: asyncio.Future[Any], feeder: _Feeder | None) -> None:
        """Wait for an upload; on any failure make sure nothing is left under ``key``."""
        try:
            # shield: a cancelled caller must not drop obstore's future mid-upload, which would
            # leave an incomplete multipart upload behind (see _settle_cancelled).
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if not fut.done():
                await self._settle_cancelled(key, fut, feeder)
                raise
            self._raise_put_failure(fut.exception() if not fut.cancelled() else None, feeder)
        except Exception as exc:
            self._raise_put_failure(exc, feeder)

    def _raise_put_failure(self, exc: BaseException | None, feeder: _Feeder | None) -> None:
        if feeder is not None and feeder.error is not None:
            # The caller's iterator or the size limiter failed: give back that exact error.
            raise feeder.error
        if isinstance(exc, Exception) and not isinstance(exc, (_ObstoreError, OSError)):
            raise exc  # a programming error (bad argument), not a backend failure
        raise self._unavailable("put", exc) from None

    async def _settle_cancelled(self, key: str, fut: asyncio.Future[Any], feeder: _Feeder | None) -> None:
        """Make a cancelled upload fail on the backend's side, wait for that (bounded), and
        delete the object if the upload had already completed."""
        if feeder is not None:
            feeder.abort()
        try:
            await asyncio.wait_for(fut, self._abort_timeout_s)
        except (Exception, asyncio.CancelledError):
            pass  # failed, dropped, timed out or cancelled again: our caller re-raises anyway
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            # The upload completed before the abort took effect.
            await asyncio.shield(self._delete_quietly(key))

    async def _delete_quietly(self, key: str) -> None:
        try:
            await asyncio.wait_for(self.delete(key), self._abort_timeout_s)
        except Exception:
            pass

    # -- reading -----------------------------------------------------------------------------
    async def get_stream(self, key: str) -> Blob:
        validate_key(key)
        try:
            result = await obstore.get_async(self._store, key)
        except _NOT_FOUND:
            raise BlobNotFound(key) from None
        except Exception as exc:
            raise self._unavailable("get", exc) from None
        meta = result.meta
        return Blob(
            meta["size"],
            result.attributes.get("Content-Type"),
            _bounded(result.stream(min_chunk_size=self._read_chunk_bytes), 2 * self._read_chunk_bytes),
            last_modified=meta["last_modified"],
            map_error=lambda exc: self._unavailable("get", exc),
        )

    async def head(self, key: str) -> BlobMeta | None:
        validate_key(key)
        try:
            # A GET with head=True is a HeadObject that also returns the attributes.
            result = await obstore.get_async(self._store, key, options={"head": True})
        except _NOT_FOUND:
            return None
        except Exception as exc:
            raise self._unavailable("head", exc) from None
        meta = result.meta
        return BlobMeta(meta["size"], meta["last_modified"], result.attributes.get("Content-Type"))

    # -- deleting ----------------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        validate_key(key)
        try:
            await obstore.delete_async(self._store, key)
        except _NOT_FOUND:
            pass  # the local filesystem reports a missing file; S3 and memory do not
        except Exception as exc:
            raise self._unavailable("delete", exc) from None

    async def delete_many(self, keys: Iterable[str]) -> None:
        paths = [validate_key(k) for k in keys]
        if not paths:
            return
        if not self._bulk_delete_ignores_missing:
            for path in paths:
                await self.delete(path)
            return
        try:
            await obstore.delete_async(self._store, paths)
        except _NOT_FOUND:
            pass
        except Exception as exc:
            raise self._unavailable("delete", exc) from None

    async def list_keys(self, prefix: str, *, limit: int = 1000, after: str | None = None) -> list[str]:
        if prefix:
            validate_key(prefix.rstrip("/"))
        keys: list[str] = []
        try:
            async for batch in obstore.list(self._store, prefix=prefix or None, offset=after,
                                            chunk_size=max(1, min(limit, 1000))):
                keys.extend(meta["path"] for meta in batch)
                if self._sorted_listing and len(keys) >= limit:
                    return keys[:limit]
        except _NOT_FOUND:
            pass  # a local folder that was never created
        except Exception as exc:
            raise self._unavailable("list", exc) from None
        if not self._sorted_listing:  # a folder walk: all of it, then the first ``limit`` in order
            keys.sort()
        return keys[:limit]

    # -- readiness ---------------------------------------------------------------------------
    async def check(self) -> None:
        try:
            await self._probe()
        except BlobUnavailable:
            raise
        except Exception as exc:
            raise BlobUnavailable(
                f"Storage connection failed for bucket {self.name}: {self.describe(exc)}"
            ) from None

    async def _probe(self) -> None:
        """Backend-specific cheap probe; raise on failure."""

    # -- errors ------------------------------------------------------------------------------
    def _unavailable(self, op: str, exc: BaseException | None) -> BlobUnavailable:
        return BlobUnavailable(f"storage {op} failed: {self.describe(exc)}")

    def describe(self, exc: BaseException | None) -> str:
        """A one-line, secret-free summary of a backend error, for logs."""
        if exc is None:
            return "cancelled"
        text = str(exc)
        code = re.search(r"<Code>([^<]{1,64})</Code>", text)
        if code:
            summary = code.group(1)
            message = re.search(r"<Message>([^<]{1,200})</Message>", text)
            if message:
                summary += f": {message.group(1)}"
        else:
            # obstore appends a multi-line debug dump and S3 error bodies (which can echo the
            # access key and the string to sign): keep only the first line, before any XML.
            summary = text.split("\n", 1)[0].split("<?xml", 1)[0].strip()[:300]
        for secret in self._secrets:
            summary = summary.replace(secret, "***")
        return f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
