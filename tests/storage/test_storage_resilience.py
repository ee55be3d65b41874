"""The blob adapter keeps nothing on a failed put (spec §12 integration_storage_resilience), on the
node's own store for the local and the S3 backend."""

from __future__ import annotations

import pytest

from obscura.blobs import BlobTooLarge, BlobTooSmall
from tests.storage.conftest import Node


class _Boom(Exception):
    pass


async def _faulty(first: bytes):
    yield first
    raise _Boom("stream broke")


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


# -- the adapter (upstream's WB tests on `put`) ----------------------------------------------------
async def test_faulty_stream_leaves_no_object(node: Node):
    with pytest.raises(_Boom):
        await node.app.blobs.put_stream("attachments/faulty", _faulty(b"x" * 100), max_bytes=1000)
    assert node.objects() == []


async def test_max_size_enforced_while_streaming(node: Node):
    with pytest.raises(BlobTooLarge):
        await node.app.blobs.put_stream("attachments/big", _chunks(b"x" * 100, b"x" * 50), max_bytes=100)
    assert node.objects() == []


async def test_min_size_enforced_after_streaming(node: Node):
    with pytest.raises(BlobTooSmall):
        await node.app.blobs.put_stream("attachments/small", _chunks(b"x" * 5), min_bytes=10, max_bytes=100)
    assert node.objects() == []
