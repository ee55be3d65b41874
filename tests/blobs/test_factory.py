"""make_blob_store picks and configures the backend from Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obscura.blobs import make_blob_store, put_bytes
from obscura.blobs.local import LocalBlobStore
from obscura.blobs.memory import MemoryBlobStore
from obscura.blobs.s3 import S3BlobStore
from obscura.config import load_settings


async def test_local_is_the_default_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=str(tmp_path))
    store = make_blob_store(settings)
    assert isinstance(store, LocalBlobStore) and store.root == str(tmp_path / "blobs")
    await put_bytes(store, "attachments/a", b"x")
    assert (tmp_path / "blobs" / "attachments" / "a").read_bytes() == b"x"
    await store.check()


async def test_local_path_override(tmp_path: Path) -> None:
    settings = load_settings(environ={}, storage_local_path=str(tmp_path / "elsewhere"))
    store = make_blob_store(settings)
    assert isinstance(store, LocalBlobStore) and store.root == str(tmp_path / "elsewhere")


async def test_memory_backend() -> None:
    store = make_blob_store(load_settings(environ={}, storage_backend="memory"))
    assert isinstance(store, MemoryBlobStore)
    await store.check()


async def test_s3_backend_from_settings(s3_settings: dict[str, Any]) -> None:
    store = make_blob_store(load_settings(environ={}, **s3_settings))
    assert isinstance(store, S3BlobStore) and store.name == s3_settings["storage_bucket"]
    await store.check()
    await put_bytes(store, "backups/dev/v1", b"0123456789" * 4)
    assert await (await store.get_stream("backups/dev/v1")).read_all() == b"0123456789" * 4


async def test_auto_picks_s3_when_an_endpoint_is_set(s3_settings: dict[str, Any]) -> None:
    overrides = dict(s3_settings, storage_backend="auto")
    assert isinstance(make_blob_store(load_settings(environ={}, **overrides)), S3BlobStore)
