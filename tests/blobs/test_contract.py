"""The BlobStore contract, run against every backend: local folder, memory and S3 (moto)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from obscura.blobs import (
    BlobLengthMismatch, BlobNotFound, BlobTooLarge, BlobTooSmall, put_bytes,
)
from tests.blobs.conftest import Backend
from tests.blobs.sources import MiB, Source, SourceFailed, digest_of, one_chunk


async def test_small_round_trip(backend: Backend) -> None:
    store = backend.store
    assert await store.put_stream("attachments/a1", one_chunk(b"hello world"), max_bytes=100) == 11
    blob = await store.get_stream("attachments/a1")
    assert blob.size == 11
    assert await blob.read_all() == b"hello world"
    meta = await store.head("attachments/a1")
    assert meta is not None and meta.size == 11 and meta.last_modified is not None
    assert await backend.leftovers() == ["attachments/a1"]


async def test_content_type_is_kept_where_the_backend_can(backend: Backend) -> None:
    await backend.store.put_stream("x/ct", one_chunk(b"abc"), max_bytes=3, content_type="application/x-test")
    blob = await backend.store.get_stream("x/ct")
    meta = await backend.store.head("x/ct")
    await blob.aclose()
    # The local filesystem stores no metadata; the others must round-trip it.
    expected = None if backend.kind == "local" else "application/x-test"
    assert blob.content_type == expected and meta is not None and meta.content_type == expected


async def test_empty_body_when_min_is_zero(backend: Backend) -> None:
    assert await backend.store.put_stream("x/empty", one_chunk(b""), max_bytes=10) == 0
    blob = await backend.store.get_stream("x/empty")
    assert blob.size == 0 and await blob.read_all() == b""


@pytest.mark.parametrize("total", [5 * MiB, 5 * MiB + 1, 13 * MiB + 12345])
async def test_multi_mib_round_trip_across_many_chunks(backend: Backend, total: int) -> None:
    src = Source(total, 32 * 1024, random_sizes=True, seed=total)
    size = await backend.store.put_stream("backups/dev/v1", src, max_bytes=total, min_bytes=1)
    assert size == total and src.chunks > 100
    blob = await backend.store.get_stream("backups/dev/v1")
    assert blob.size == total
    digest, got, largest = await digest_of(blob)
    assert (digest, got) == (src.digest, total)
    assert largest <= 2 * MiB  # streamed in bounded chunks, not one body
    assert await backend.leftovers() == ["backups/dev/v1"]


async def test_overwrite_replaces_the_object(backend: Backend) -> None:
    await put_bytes(backend.store, "k/v", b"first")
    await put_bytes(backend.store, "k/v", b"second!")
    assert await (await backend.store.get_stream("k/v")).read_all() == b"second!"


async def test_head_and_get_of_a_missing_key(backend: Backend) -> None:
    assert await backend.store.head("attachments/nope") is None
    with pytest.raises(BlobNotFound):
        await backend.store.get_stream("attachments/nope")


async def test_delete_and_delete_many(backend: Backend) -> None:
    store = backend.store
    for key in ("a/1", "a/2", "b/3", "b/4"):
        await put_bytes(store, key, key.encode())
    await store.delete("a/1")
    await store.delete("a/1")  # missing is not an error
    assert await store.head("a/1") is None
    await store.delete_many(["a/2", "b/3", "never/was"])
    await store.delete_many([])
    assert await backend.leftovers() == ["b/4"]
    assert await (await store.get_stream("b/4")).read_all() == b"b/4"


async def test_max_is_enforced_while_streaming(backend: Backend) -> None:
    src = Source(10 * MiB, 100)
    with pytest.raises(BlobTooLarge):
        await backend.store.put_stream("attachments/big", src, max_bytes=1000)
    # Aborted on the first chunk past the limit, not after reading the whole body.
    assert src.pulled == 1100
    assert await backend.leftovers() == []


async def test_max_is_enforced_during_a_multipart_upload(backend: Backend) -> None:
    src = Source(64 * MiB, 256 * 1024)
    with pytest.raises(BlobTooLarge):
        await backend.store.put_stream("attachments/big", src, max_bytes=12 * MiB)
    assert src.pulled <= 12 * MiB + 256 * 1024
    assert await backend.leftovers() == []


async def test_declared_length_is_checked_before_reading(backend: Backend) -> None:
    src = Source(50, 10)
    with pytest.raises(BlobTooLarge):
        await backend.store.put_stream("k/a", src, max_bytes=100, content_length=101)
    with pytest.raises(BlobTooSmall):
        await backend.store.put_stream("k/a", src, min_bytes=10, max_bytes=100, content_length=5)
    assert src.pulled == 0
    assert await backend.leftovers() == []


async def test_body_must_match_declared_length(backend: Backend) -> None:
    with pytest.raises(BlobLengthMismatch):
        await backend.store.put_stream("k/short", one_chunk(b"12345"), max_bytes=100, content_length=10)
    with pytest.raises(BlobLengthMismatch):
        await backend.store.put_stream("k/long", Source(30, 10), max_bytes=100, content_length=20)
    assert await backend.store.put_stream("k/ok", Source(15, 4), max_bytes=20, min_bytes=10,
                                          content_length=15) == 15
    assert await backend.leftovers() == ["k/ok"]


async def test_min_is_enforced_and_nothing_is_stored(backend: Backend) -> None:
    with pytest.raises(BlobTooSmall):
        await backend.store.put_stream("backups/d/v1", one_chunk(b"12345"), min_bytes=10, max_bytes=100)
    assert await backend.leftovers() == []


async def test_min_is_enforced_after_a_multipart_upload_started(backend: Backend) -> None:
    src = Source(6 * MiB, 512 * 1024)
    with pytest.raises(BlobTooSmall):
        await backend.store.put_stream("k/m", src, min_bytes=7 * MiB, max_bytes=20 * MiB)
    assert await backend.leftovers() == []


@pytest.mark.parametrize("fail_after", [100, 7 * MiB])
async def test_a_failing_source_leaves_nothing(backend: Backend, fail_after: int) -> None:
    src = Source(20 * MiB, 100 if fail_after == 100 else 256 * 1024, fail_after_bytes=fail_after)
    with pytest.raises(SourceFailed):
        await backend.store.put_stream("attachments/f", src, max_bytes=50 * MiB)
    assert await backend.leftovers() == []


@pytest.mark.parametrize("block_after", [1024, 7 * MiB])
async def test_cancellation_mid_upload_leaves_nothing(backend: Backend, block_after: int) -> None:
    src = Source(20 * MiB, 256 * 1024, block_after_bytes=block_after)
    task = asyncio.create_task(backend.store.put_stream("attachments/c", src, max_bytes=50 * MiB))
    await asyncio.wait_for(src.blocked.wait(), 10)
    await asyncio.sleep(0.2)  # let the first part go out
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert await backend.leftovers() == []


async def test_timeout_around_an_upload_leaves_nothing(backend: Backend) -> None:
    src = Source(20 * MiB, 256 * 1024, block_after_bytes=6 * MiB)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await backend.store.put_stream("attachments/t", src, max_bytes=50 * MiB)
    assert await backend.leftovers() == []


async def test_concurrent_puts_and_gets(backend: Backend) -> None:
    keys = [f"attachments/{i}" for i in range(20)]
    await asyncio.gather(*(put_bytes(backend.store, k, k.encode() * 100) for k in keys))
    blobs = await asyncio.gather(*(backend.store.get_stream(k) for k in keys))
    bodies = await asyncio.gather(*(b.read_all() for b in blobs))
    assert bodies == [k.encode() * 100 for k in keys]


async def test_reader_may_stop_early(backend: Backend) -> None:
    await backend.store.put_stream("k/big", Source(3 * MiB, 64 * 1024), max_bytes=3 * MiB)
    blob = await backend.store.get_stream("k/big")
    first = await blob.__anext__()
    assert first
    await blob.aclose()
    assert [c async for c in blob] == []


async def test_check_is_ok(backend: Backend) -> None:
    await asyncio.wait_for(backend.store.check(), 5)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/./b", "a/../b", "sp ace", "a/"])
async def test_unsafe_keys_are_rejected(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError):
        await put_bytes(backend.store, key, b"x")
    with pytest.raises(ValueError):
        await backend.store.head(key)


async def test_a_reused_read_buffer_is_copied_not_referenced(backend: Backend) -> None:
    buffer = bytearray(MiB)

    async def reused() -> AsyncIterator[memoryview]:
        for i in range(7):  # 7 MiB: goes out as a multipart upload
            buffer[:] = bytes([i]) * MiB
            yield memoryview(buffer)

    assert await backend.store.put_stream("k/reused", reused(), max_bytes=7 * MiB) == 7 * MiB
    body = await (await backend.store.get_stream("k/reused")).read_all()
    assert body == b"".join(bytes([i]) * MiB for i in range(7))


async def test_list_keys_in_key_order_after_a_key(backend: Backend) -> None:
    """The order and the ``after`` bound hold on every backend, a folder walk included."""
    keys = [f"backups/{i:02d}{c}/v1" for i, c in zip(range(30), "qwertyuiopasdfghjklzxcvbnmqwer")]
    for key in reversed(keys):
        await put_bytes(backend.store, key, b"x", max_bytes=1)
    await put_bytes(backend.store, "backupsx/1", b"x", max_bytes=1)  # not under the folder
    ordered = sorted(keys)
    assert await backend.store.list_keys("backups/", limit=100) == ordered
    assert await backend.store.list_keys("backups/", limit=7) == ordered[:7]
    assert await backend.store.list_keys("backups/", limit=7, after=ordered[6]) == ordered[7:14]
    assert await backend.store.list_keys("backups/", limit=100, after=ordered[-1]) == []
    pages, after = [], None
    while page := await backend.store.list_keys("backups/", limit=4, after=after):
        pages += page
        after = page[-1]
    assert pages == ordered
