"""Blob storage for attachments and backups: the BlobStore interface and its obstore backends."""

from obscura.blobs.base import (
    Blob, BlobError, BlobLengthMismatch, BlobMeta, BlobNotFound, BlobStore, BlobTooLarge,
    BlobTooSmall, BlobUnavailable, put_bytes,
)
from obscura.blobs.factory import make_blob_store

__all__ = [
    "Blob", "BlobError", "BlobLengthMismatch", "BlobMeta", "BlobNotFound", "BlobStore",
    "BlobTooLarge", "BlobTooSmall", "BlobUnavailable", "make_blob_store", "put_bytes",
]
