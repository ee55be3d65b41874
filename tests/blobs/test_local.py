"""Local-folder specifics: readiness of the folder and files on disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from obscura.blobs import BlobUnavailable, put_bytes
from obscura.blobs.local import LocalBlobStore


async def test_check_fails_when_the_folder_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(str(root))
    await store.check()
    shutil.rmtree(root)
    with pytest.raises(BlobUnavailable) as info:
        await store.check()
    assert str(info.value).startswith(f"Storage connection failed for bucket {root}: ")


async def test_objects_are_plain_files_and_empty_folders_are_pruned(tmp_path: Path) -> None:
    store = LocalBlobStore(str(tmp_path))
    await put_bytes(store, "backups/dev1/v1", b"backup-bytes")
    assert (tmp_path / "backups" / "dev1" / "v1").read_bytes() == b"backup-bytes"
    await store.delete("backups/dev1/v1")
    assert not (tmp_path / "backups" / "dev1").exists()
    assert os.path.isdir(tmp_path)
