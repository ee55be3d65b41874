"""Builds the configured BlobStore from Settings (only app.py should call this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from obscura.blobs.base import BlobStore

if TYPE_CHECKING:
    from obscura.config import Settings

__all__ = ["make_blob_store"]


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store for ``settings.storage_kind`` (``local``, ``s3`` or ``memory``)."""
    kind = settings.storage_kind
    if kind == "local":
        from obscura.blobs.local import LocalBlobStore

        return LocalBlobStore(settings.blob_dir)
    if kind == "memory":
        from obscura.blobs.memory import MemoryBlobStore

        return MemoryBlobStore()
    if kind == "s3":
        from obscura.blobs.s3 import S3BlobStore

        # Long enough for the slowest route that streams a blob (spec §6.1, §6.2).
        request_timeout_s = max(settings.attachment_timeout_secs, settings.backup_timeout_secs) + 30
        return S3BlobStore(
            settings.storage_bucket,
            region=settings.storage_region,
            endpoint=settings.storage_endpoint,
            access_key=settings.storage_access_key,
            secret_key=settings.storage_secret_key,
            force_path_style=settings.storage_force_path_style,
            request_timeout_s=float(request_timeout_s),
        )
    raise ValueError(f"unknown storage backend {kind!r}")
