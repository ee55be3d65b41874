"""A broken store gives 500 and leaves no row or locked slot; the cleanup workers stay bounded on
failures (decisions §4.8, §4.9) and are owned by the App."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, Iterable

import pytest

from obscura.blobs import Blob, BlobMeta, BlobStore, BlobUnavailable
from obscura.services.attachments import AttachmentService
from obscura.services.backups import BackupService
from obscura.store.postgres.attachments import AttachmentRepo
from obscura.store.postgres.backups import BackupRepo
from obscura.telemetry import Telemetry
from obscura.workers.attachment_cleanup import AttachmentCleanupWorker
from obscura.workers.backup_cleanup import BackupCleanupWorker
from obscura.workers.base import PeriodicWorker
from tests.storage.conftest import Node


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


class BrokenStore(BlobStore):
    """Injected fault: every write or delete fails as an unreachable backend would; reads delegate."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.put_calls = self.delete_calls = 0

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], **kw) -> int:
        self.put_calls += 1
        raise BlobUnavailable("storage put failed: connection refused")

    async def get_stream(self, key: str) -> Blob:
        return await self.inner.get_stream(key)

    async def head(self, key: str) -> BlobMeta | None:
        return await self.inner.head(key)

    async def list_keys(self, prefix: str, **kw) -> list[str]:
        return await self.inner.list_keys(prefix, **kw)

    async def delete(self, key: str) -> None:
        self.delete_calls += 1
        raise BlobUnavailable("storage delete failed: connection refused")

    async def delete_many(self, keys: Iterable[str]) -> None:
        self.delete_calls += 1
        raise BlobUnavailable("storage delete failed: connection refused")

    async def check(self) -> None:
        raise BlobUnavailable("Storage connection failed for bucket broken: refused")


@pytest.fixture
def backend_kind() -> str:
    return "local"  # the fault is injected above the backend


async def test_broken_store_upload_is_500_and_leaves_no_row(node: Node):
    broken = BrokenStore(node.app.blobs)
    service = AttachmentService(AttachmentRepo(node.app.database), broken, Telemetry(), prefix="attachments/",
                                min_bytes=1, max_bytes=100, ttl_days=30)
    with pytest.raises(Exception) as info:
        await service.upload(_chunks(b"hello"), 5)
    assert getattr(info.value, "status", None) == 500
    assert await node.fetchval("SELECT count(*) FROM attachments") == 0


async def test_broken_store_backup_is_500_and_releases_the_slot(node: Node):
    dev = await node.device()
    service = BackupService(BackupRepo(node.app.database), BrokenStore(node.app.blobs), Telemetry(),
                            prefix="backups/", min_bytes=1, max_bytes=100, stale_after_s=3600)
    with pytest.raises(Exception) as info:
        await service.upload(dev.device_id, "*", None, 5, _chunks(b"hello"))
    assert getattr(info.value, "status", None) == 500
    async with node.app.database.acquire() as conn:
        row = await conn.fetchrow("SELECT current_version, state FROM backups WHERE device_id = $1", dev.device_id)
    assert tuple(row) == (0, "ACTIVE")
    # The slot is free at once: the real store accepts the next attempt.
    assert await node.app.backups.upload(dev.device_id, "*", None, 40, _chunks(b"h" * 40)) == 1


async def test_attachment_cleanup_is_bounded_when_deletes_fail(node: Node):
    await node.app.attachment_cleanup.stop()  # the node's own worker would race this test's cycles
    async with node.app.database.acquire() as conn:
        await conn.executemany("INSERT INTO attachments (id, expires_at) VALUES ($1, now() - interval '1 day')",
                               [(uuid.uuid4(),) for _ in range(250)])
    broken = BrokenStore(node.app.blobs)
    telemetry = Telemetry()
    service = AttachmentService(AttachmentRepo(node.app.database), broken, telemetry, prefix="attachments/",
                                min_bytes=1, max_bytes=100, ttl_days=30)
    worker = AttachmentCleanupWorker(service, telemetry, interval_s=3600, batch_size=100)
    assert await worker.run_cycle() == 0
    assert broken.delete_calls == 100  # one batch, then the cycle gives up until the next interval
    assert telemetry.value("obscura_attachment_cleanup_errors_total") == 1
    assert await node.fetchval("SELECT count(*) FROM attachments") == 250  # rows kept for a retry
    # With the store back, one cycle clears everything, batch after batch.
    worker = AttachmentCleanupWorker(node.app.attachments, telemetry, interval_s=3600, batch_size=100)
    assert await worker.run_cycle() == 250
    assert await node.fetchval("SELECT count(*) FROM attachments") == 0


async def test_backup_cleanup_is_bounded_when_deletes_fail(node: Node):
    await node.app.backup_cleanup.stop()  # the node's own worker would race this test's cycles
    devs = [await node.device() for _ in range(3)]
    for dev in devs:
        await node.execute("INSERT INTO backups (device_id, current_version, pending_version, state, pending_at) "
                           "VALUES ($1, 1, 2, 'UPLOADING', now() - interval '2 hours')", dev.device_id)
    telemetry = Telemetry()
    service = BackupService(BackupRepo(node.app.database), BrokenStore(node.app.blobs), telemetry,
                            prefix="backups/", min_bytes=1, max_bytes=100, stale_after_s=60)
    worker = BackupCleanupWorker(service, telemetry, interval_s=3600, batch_size=2)
    # The pending objects could not be deleted, yet the slots are released (the next upload
    # overwrites that key) and the cycle stops after the failing batch.
    assert await worker.run_cycle() == 2
    assert telemetry.value("obscura_backup_cleanup_errors") == 1
    assert telemetry.value("obscura_backup_cleanup_runs") is None
    assert await worker.run_cycle() == 1
    assert await node.fetchval("SELECT count(*) FROM backups WHERE state = 'UPLOADING'") == 0


async def test_periodic_worker_never_spins_on_a_failing_cycle():
    calls = 0
    errors: list[Exception] = []

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise BlobUnavailable("down")

    worker = PeriodicWorker("test", failing, interval_s=3600, on_error=errors.append)
    task = worker.start()
    async with asyncio.timeout(5):
        while worker.cycles < 1:
            await asyncio.sleep(0.01)
    for _ in range(20):  # let the loop run freely: it must be asleep until the next interval
        await asyncio.sleep(0)
    assert calls == 1 and len(errors) == 1 and not task.done()
    await worker.stop()
    assert task.cancelled()


async def test_periodic_worker_bounds_a_hanging_cycle():
    async def hangs() -> None:
        await asyncio.Event().wait()

    errors: list[Exception] = []
    worker = PeriodicWorker("hang", hangs, interval_s=3600, cycle_timeout_s=0.05, on_error=errors.append)
    await worker.run_once()
    assert len(errors) == 1 and isinstance(errors[0], TimeoutError)


async def test_app_stop_cancels_the_cleanup_workers(node_factory):
    async with node_factory() as node:
        workers = list(node.app._r.workers)
        assert len(workers) >= 2 and not any(t.done() for t in workers)
    assert all(t.done() for t in workers)
