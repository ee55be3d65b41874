"""Fixtures for the blob store contract suite: one store per backend (local, memory, s3 on moto)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from obscura.blobs.base import BlobStore
from obscura.blobs.local import LocalBlobStore
from obscura.blobs.memory import MemoryBlobStore
from obscura.blobs.s3 import S3BlobStore
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY

BACKENDS = ("local", "memory", "s3")


@dataclass
class Backend:
    """A store under test plus a way to see everything it left behind."""

    kind: str
    store: BlobStore
    root: str | None = None
    s3_client: Any = None
    bucket: str | None = None

    async def leftovers(self) -> list[str]:
        """Every object, temp file and incomplete multipart upload in the backend."""
        if self.kind == "local":
            found = []
            for dirpath, _dirs, files in os.walk(self.root):
                found += [os.path.relpath(os.path.join(dirpath, f), self.root) for f in files]
            return sorted(found)
        if self.kind == "s3":
            objects = self.s3_client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            uploads = self.s3_client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
            return sorted([o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads])
        import obstore

        return sorted(m["path"] for m in await obstore.list(self.store._store).collect_async())


def make_s3_store(endpoint: str, bucket: str, **kwargs: Any) -> S3BlobStore:
    return S3BlobStore(
        bucket, region=S3_REGION, endpoint=endpoint, access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY, force_path_style=True, **kwargs,
    )


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "local":
        root = str(tmp_path / "blobs")
        b = Backend(kind, LocalBlobStore(root), root=root)
    elif kind == "memory":
        b = Backend(kind, MemoryBlobStore())
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        client = request.getfixturevalue("s3_client")
        b = Backend(kind, make_s3_store(endpoint, bucket), s3_client=client, bucket=bucket)
    try:
        yield b
    finally:
        await b.store.close()


@pytest.fixture
def store(backend: Backend) -> BlobStore:
    return backend.store
