"""Encrypted attachments: streamed upload with size rules, download by id, expiry cleanup (spec §6.1)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from obscura.blobs import (
    Blob, BlobLengthMismatch, BlobNotFound, BlobStore, BlobTooLarge, BlobTooSmall, BlobUnavailable,
)
from obscura.errors import BadRequest, InternalError, NotFound, PayloadTooLarge
from obscura.telemetry import Telemetry, traced

__all__ = ["AttachmentService", "AttachmentStore", "UploadedAttachment", "etag_matches"]

log = logging.getLogger("obscura.attachments")

TOO_SMALL = "Attachment too small"
_CLEANUP_STEP_TIMEOUT_S = 30.0


class AttachmentStore(Protocol):
    async def insert(self, attachment_id: uuid.UUID, ttl_days: int, size_bytes: int) -> datetime.datetime: ...
    async def is_live(self, attachment_id: uuid.UUID) -> bool: ...
    async def expired_ids(self, limit: int) -> list[uuid.UUID]: ...
    async def delete(self, attachment_ids: Sequence[uuid.UUID]) -> int: ...


@dataclass(frozen=True, slots=True)
class UploadedAttachment:
    attachment_id: uuid.UUID
    expires_at: datetime.datetime

    @property
    def expires_at_unix(self) -> int:
        """``expiresAt`` on the wire: whole unix seconds (spec §6.1)."""
        return int(self.expires_at.timestamp())


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """``If-None-Match`` with its surrounding quotes stripped equals ``tag`` exactly. Like upstream,
    weak tags (``W/...``) and lists are not understood (spec §6.1)."""
    return if_none_match is not None and if_none_match.strip('"') == tag


class AttachmentService:
    """Stores attachment bodies in the blob store under ``<prefix><uuid>`` and tracks their expiry."""

    def __init__(self, repo: AttachmentStore, blobs: BlobStore, telemetry: Telemetry, *, prefix: str,
                 min_bytes: int, max_bytes: int, ttl_days: int) -> None:
        self._telemetry = telemetry  # for @traced
        self._repo = repo
        self._blobs = blobs
        self._prefix = prefix
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._ttl_days = ttl_days
        self._bytes = telemetry.counter("obscura_attachment_upload_bytes_total", "attachment bytes stored", "By")
        self._sizes = telemetry.histogram("obscura_attachment_upload_size_bytes", "attachment sizes", "By")
        self._deleted = telemetry.counter("obscura_attachments_deleted_total", "attachments garbage-collected")

    def key(self, attachment_id: uuid.UUID) -> str:
        return f"{self._prefix}{attachment_id}"

    def check_declared_size(self, content_length: int) -> None:
        """The fast checks on the declared length, before any byte is read (spec §6.1)."""
        if content_length < self.min_bytes:
            raise BadRequest(TOO_SMALL)
        if content_length > self.max_bytes:
            raise PayloadTooLarge()

    @traced("attachments.upload")
    async def upload(self, chunks: AsyncIterable[bytes], content_length: int) -> UploadedAttachment:
        """Stream the body into the blob store; 201 data on success.

        The row is written first and removed again on any failure (including cancellation by a
        timeout or a disconnect), and the blob store never keeps a partial object, so a failed
        upload leaves nothing. A crash mid-upload can at worst leave a row without an object,
        which reads as 404 and is collected when it expires; never an object nobody tracks.
        """
        self.check_declared_size(content_length)
        attachment_id = uuid.uuid4()  # upstream uses v4 ids for attachments (spec §9)
        # The declared length is the stored size: put_stream fails on any other length.
        expires_at = await self._repo.insert(attachment_id, self._ttl_days, content_length)
        try:
            size = await self._blobs.put_stream(self.key(attachment_id), chunks, min_bytes=self.min_bytes,
                                                max_bytes=self.max_bytes, content_length=content_length,
                                                content_type="application/octet-stream")
        except BaseException as exc:
            await asyncio.shield(self._forget(attachment_id))
            if isinstance(exc, BlobTooLarge):
                raise PayloadTooLarge() from None
            if isinstance(exc, BlobTooSmall):
                raise BadRequest(TOO_SMALL) from None
            if isinstance(exc, BlobLengthMismatch):
                raise BadRequest("Body does not match Content-Length") from None
            if isinstance(exc, BlobUnavailable):
                log.error("attachment upload failed: %s", exc)
                raise InternalError() from None
            raise
        self._bytes.add(size)
        self._sizes.record(size)
        return UploadedAttachment(attachment_id, expires_at)

    async def _forget(self, attachment_id: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(_CLEANUP_STEP_TIMEOUT_S):
                await self._repo.delete([attachment_id])
        except Exception as exc:  # noqa: BLE001 - the row expires and is collected anyway
            log.warning("could not remove the row of a failed attachment upload: %s", type(exc).__name__)

    @traced("attachments.open")
    async def open(self, attachment_id: uuid.UUID) -> Blob:
        """The stored body for streaming; NotFound when unknown, expired or missing in storage."""
        if not await self._repo.is_live(attachment_id):
            raise NotFound()
        try:
            return await self._blobs.get_stream(self.key(attachment_id))
        except BlobNotFound:
            raise NotFound() from None
        except BlobUnavailable as exc:
            log.error("attachment download failed: %s", exc)
            raise InternalError() from None

    async def delete_expired_batch(self, limit: int) -> tuple[int, int, int]:
        """One cleanup batch: blob first, row only once its blob is gone (spec §6.1).

        Returns (selected, deleted, failed). A blob whose delete fails keeps its row, so it is
        retried on a later cycle rather than orphaned.
        """
        ids = await self._repo.expired_ids(limit)
        if not ids:
            return 0, 0, 0
        gone: list[uuid.UUID] = []
        failed = 0
        for attachment_id in ids:
            try:
                async with asyncio.timeout(_CLEANUP_STEP_TIMEOUT_S):
                    await self._blobs.delete(self.key(attachment_id))
            except (BlobUnavailable, TimeoutError):
                failed += 1
                continue
            gone.append(attachment_id)
        deleted = await self._repo.delete(gone)
        if deleted:
            self._deleted.add(deleted)
        return len(ids), deleted, failed
