"""Backups over HTTP on the local and S3 backends: upstream's integration_backup plus our fixes (§4.5, §4.8)."""

from __future__ import annotations

import asyncio

from tests.http.support import RawConn
from tests.storage.conftest import Device, Node


async def _post(node: Node, dev: Device, data, **headers: str):
    return await node.http.post("/v1/backup", content=data, headers={**dev.auth, **headers})


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def _slot(node: Node, dev: Device):
    async with node.app.database.acquire() as conn:
        return await conn.fetchrow("SELECT current_version, pending_version, state, pending_at "
                                   "FROM backups WHERE device_id = $1", dev.device_id)


def _key(dev: Device, version: int) -> str:
    return f"backups/{dev.device_id}/v{version}"


async def test_backup_lifecycle(node_factory):
    async with node_factory(backup_min_size_bytes=0) as node:
        dev = await node.device()
        res = await node.http.get("/v1/backup", headers=dev.auth)
        assert (res.status_code, res.json()) == (404, {"error": "Not found"})
        res = await _post(node, dev, b"backup v1", **{"If-None-Match": "*"})
        assert res.status_code == 200 and res.headers["etag"] == '"1"' and res.content == b""
        assert "content-type" not in res.headers
        res = await node.http.get("/v1/backup", headers=dev.auth)
        assert res.status_code == 200 and res.content == b"backup v1"
        assert res.headers["content-type"] == "application/octet-stream" and res.headers["etag"] == '"1"'
        res = await _post(node, dev, b"backup v2 is longer", **{"If-Match": "1"})
        assert res.status_code == 200 and res.headers["etag"] == '"2"'
        assert (await node.http.get("/v1/backup", headers=dev.auth)).content == b"backup v2 is longer"
        res = await _post(node, dev, b"stale", **{"If-Match": "1"})
        assert (res.status_code, res.json()) == (412, {"error": "Precondition failed"})
        res = await node.http.head("/v1/backup", headers=dev.auth)
        assert res.status_code == 200 and res.content == b""
        assert res.headers["content-type"] == "application/octet-stream" and res.headers["etag"] == '"2"'
        assert res.headers["content-length"] == str(len(b"backup v2 is longer"))
        # Version rotation: only the current object remains (upstream's version_rotation test).
        assert node.objects() == [_key(dev, 2)]
        assert tuple(await _slot(node, dev))[:3] == (2, None, "ACTIVE")
        assert node.app.telemetry.value("obscura_backup_upload_bytes_total") == len(b"backup v1backup v2 is longer")
        assert node.app.telemetry.value("obscura_backup_upload_size_bytes")[0] == 2


async def test_backup_size_limits(node_factory):
    """Upstream's min_size, max_size and stream_limits tests (min 10, max 20)."""
    async with node_factory(backup_min_size_bytes=10, backup_max_size_bytes=20) as node:
        dev = await node.device()
        star = {"If-None-Match": "*"}
        res = await _post(node, dev, b"12345678", **star)
        assert (res.status_code, res.json()) == (400, {"error": "Backup too small"})
        res = await _post(node, dev, b"x" * 21, **star)
        assert (res.status_code, res.json()) == (413, {"error": "Payload too large"})
        res = await _post(node, dev, _chunks(b"x" * 8, b"y" * 7), **star)
        assert (res.status_code, res.json()) == (411, {"error": "Length required"})
        res = await _post(node, dev, b"x" * 5, **star)
        assert res.status_code == 400
        res = await _post(node, dev, b"x" * 25, **star)
        assert res.status_code == 413
        assert node.objects() == []
        res = await _post(node, dev, b"x" * 15, **star)
        assert res.status_code == 200 and res.headers["etag"] == '"1"'


async def test_backup_head_and_get_404_without_backup(node):
    dev = await node.device()
    assert (await node.http.head("/v1/backup", headers=dev.auth)).status_code == 404
    assert (await node.http.get("/v1/backup", headers=dev.auth)).status_code == 404


async def test_backup_needs_device_scope(node):
    dev = await node.device()
    for method in ("GET", "HEAD", "POST"):
        res = await node.http.request(method, "/v1/backup", headers=dev.user_auth)
        assert res.status_code == 403
        if method != "HEAD":
            assert res.json() == {"error": "Device-scoped token required"}
        assert (await node.http.request(method, "/v1/backup")).status_code == 401


async def test_backup_header_conflicts(node):
    dev = await node.device()
    data = b"d" * 40
    res = await _post(node, dev, data, **{"If-None-Match": "*", "If-Match": '"5"'})
    assert res.status_code == 200 and res.headers["etag"] == '"1"'
    res = await _post(node, dev, data, **{"If-None-Match": '"1"'})
    assert (res.status_code, res.json()) == (400, {"error": "Invalid If-None-Match header"})
    res = await _post(node, dev, data)
    assert (res.status_code, res.json()) == (400, {"error": "Missing If-Match or If-None-Match header"})
    res = await _post(node, dev, data, **{"If-Match": "abc"})
    assert (res.status_code, res.json()) == (400, {"error": "Invalid version in If-Match header"})
    res = await _post(node, dev, data, **{"If-Match": "99999999999"})
    assert (res.status_code, res.json()) == (400, {"error": "Invalid version in If-Match header"})
    res = await _post(node, dev, data, **{"If-Match": '"1"'})
    assert res.status_code == 200 and res.headers["etag"] == '"2"'
    # The precondition is checked before the Content-Length (spec §6.2 steps 1-2).
    res = await _post(node, dev, _chunks(data))
    assert res.status_code == 400


async def test_non_ascii_if_match(node):
    dev = await node.device()
    conn = await RawConn.open(node.app.port)
    await conn.send(f"POST /v1/backup HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
                    "If-Match: \xe9\r\nContent-Length: 40\r\n\r\n".encode("latin-1") + b"d" * 40)
    res = await conn.response()
    conn.close()
    assert (res.status, res.json()) == (400, {"error": "Invalid If-Match header"})


async def test_backup_conditional_download(node):
    dev = await node.device()
    await _post(node, dev, b"d" * 40, **{"If-None-Match": "*"})
    res = await node.http.get("/v1/backup", headers={**dev.auth, "If-None-Match": '"1"'})
    assert res.status_code == 304 and res.content == b""
    res = await node.http.get("/v1/backup", headers={**dev.auth, "If-None-Match": '"0"'})
    assert res.status_code == 200 and res.content == b"d" * 40


async def test_backup_concurrent_upload_conflict(node_factory):
    async with node_factory(backup_stale_threshold_mins=60) as node:
        dev = await node.device()
        await node.execute("INSERT INTO backups (device_id, current_version, pending_version, state, pending_at) "
                           "VALUES ($1, 0, 1, 'UPLOADING', now())", dev.device_id)
        res = await _post(node, dev, b"d" * 40, **{"If-None-Match": "*"})
        assert (res.status_code, res.json()) == (409, {"error": "Upload already in progress"})


async def test_backup_stale_takeover_via_db_state(node_factory):
    async with node_factory(backup_stale_threshold_mins=1) as node:
        dev = await node.device()
        await node.app.blobs.put_stream(_key(dev, 1), _chunks(b"old" * 20), max_bytes=100)
        await node.execute("INSERT INTO backups (device_id, current_version, pending_version, state, pending_at) "
                           "VALUES ($1, 1, 2, 'UPLOADING', now() - interval '2 minutes')", dev.device_id)
        res = await _post(node, dev, b"n" * 40, **{"If-Match": "1"})
        assert res.status_code == 200 and res.headers["etag"] == '"2"'
        assert (await node.http.get("/v1/backup", headers=dev.auth)).content == b"n" * 40
        assert node.objects() == [_key(dev, 2)]


async def test_backup_takeover_after_completed_upload(node):
    """Upstream's test_backup_takeover_stale_upload: v1, then If-Match 1 gives v2."""
    dev = await node.device()
    assert (await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})).status_code == 200
    assert (await _post(node, dev, b"b" * 40, **{"If-Match": "1"})).status_code == 200
    assert (await node.http.head("/v1/backup", headers=dev.auth)).headers["etag"] == '"2"'


async def test_backup_orphaned_db_record_is_404(node):
    dev = await node.device()
    await node.execute("INSERT INTO backups (device_id, current_version) VALUES ($1, 1)", dev.device_id)
    assert (await node.http.get("/v1/backup", headers=dev.auth)).status_code == 404
    assert (await node.http.head("/v1/backup", headers=dev.auth)).status_code == 404


async def test_backup_cleanup_worker_resets_stale_slot(node):
    dev = await node.device()
    await node.app.blobs.put_stream(_key(dev, 2), _chunks(b"p" * 40), max_bytes=100)
    await node.execute("INSERT INTO backups (device_id, current_version, pending_version, state, pending_at) "
                       "VALUES ($1, 1, 2, 'UPLOADING', now() - interval '2 hours')", dev.device_id)
    assert await node.app.backup_cleanup.cleanup_stale() >= 1
    assert tuple(await _slot(node, dev)) == (1, None, "ACTIVE", None)
    assert node.objects() == []
    assert node.app.telemetry.value("obscura_backup_cleanup_cleaned") == 1


async def test_failed_upload_releases_the_slot_at_once(node_factory):
    """Unlike upstream (spec §13 item 11), an aborted upload gives the slot back: no 409 after it."""
    async with node_factory(backup_stale_threshold_mins=60) as node:
        dev = await node.device()
        conn = await RawConn.open(node.app.port)
        await conn.send(f"POST /v1/backup HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
                        "If-None-Match: *\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 100)
        async with asyncio.timeout(5):
            while (slot := await _slot(node, dev)) is None or slot["state"] != "UPLOADING":
                await asyncio.sleep(0.02)
        conn.writer.transport.abort()
        async with asyncio.timeout(5):
            while (await _slot(node, dev))["state"] != "ACTIVE":
                await asyncio.sleep(0.02)
        assert tuple(await _slot(node, dev)) == (0, None, "ACTIVE", None)
        assert node.objects() == []
        res = await _post(node, dev, b"d" * 40, **{"If-None-Match": "*"})
        assert res.status_code == 200 and res.headers["etag"] == '"1"'


async def test_concurrent_uploads_on_one_slot_exactly_one_wins(node):
    dev = await node.device()
    bodies = [bytes([65 + i]) * 64 for i in range(8)]
    results = await asyncio.gather(*(_post(node, dev, b, **{"If-None-Match": "*"}) for b in bodies))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}
    winner = next(b for b, r in zip(bodies, results) if r.status_code == 200)
    assert (await node.http.get("/v1/backup", headers=dev.auth)).content == winner
    assert node.objects() == [_key(dev, 1)]
    assert tuple(await _slot(node, dev))[:3] == (1, None, "ACTIVE")


async def test_deleting_the_device_deletes_its_backup_objects(node):
    dev = await node.device()
    other = await node.device()
    await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})
    await _post(node, other, b"b" * 40, **{"If-None-Match": "*"})
    # A stray object (e.g. a pending version whose delete failed) goes too.
    await node.app.blobs.put_stream(_key(dev, 7), _chunks(b"z" * 40), max_bytes=100)
    # Still existing: nothing is deleted.
    await node.app.backups.delete_device_backups(dev.user_id, dev.device_id)
    assert len(node.objects()) == 3
    await node.execute("DELETE FROM devices WHERE id = $1", dev.device_id)
    await node.app.backups.delete_device_backups(dev.user_id, dev.device_id)
    assert node.objects() == [_key(other, 1)]
    # The token of the deleted device cannot create a slot again (decisions §4.6).
    res = await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})
    assert res.status_code == 401
    assert node.objects() == [_key(other, 1)]


async def test_device_delete_endpoint_deletes_backup_objects(node):
    dev = await node.device()
    await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})
    assert node.objects() == [_key(dev, 1)]
    res = await node.http.delete(f"/v1/devices/{dev.device_id}", headers=dev.user_auth)
    assert res.status_code == 200, res.text
    assert node.objects() == []
    assert await node.fetchval("SELECT count(*) FROM backups") == 0


async def test_the_sweep_deletes_backup_objects_nothing_else_will(node):
    """Decisions §4.5 after a crash: a deleted device's objects and replaced versions whose delete
    never ran are found by the cleanup worker's sweep; current and pending ones stay."""
    await node.app.backup_cleanup.stop()  # its own cycles would race the steps below
    kept, gone = await node.device(), await node.device()
    await _post(node, kept, b"a" * 40, **{"If-None-Match": "*"})
    await _post(node, kept, b"b" * 40, **{"If-Match": "1"})
    await _post(node, gone, b"c" * 40, **{"If-None-Match": "*"})
    # As if a node had died: the replaced v1 was never deleted, and the device row went without
    # its hook; an upload of v3 is under way; a key that is not a backup object.
    await node.app.blobs.put_stream(_key(kept, 1), _chunks(b"a" * 40), max_bytes=100)
    await node.app.blobs.put_stream(_key(kept, 3), _chunks(b"d" * 40), max_bytes=100)
    await node.app.blobs.put_stream("backups/notes/readme", _chunks(b"n" * 40), max_bytes=100)
    await node.execute("DELETE FROM devices WHERE id = $1", gone.device_id)
    assert len(node.objects()) == 5
    worker = node.app.backup_cleanup
    worker.sweep_batch = 2  # several steps, each starting after the last key of the one before
    deleted, steps = 0, 0
    while True:
        deleted += await worker.sweep_step()
        steps += 1
        if worker._sweep_after is None:
            break
    assert steps == 3 and deleted == 2
    assert node.objects() == sorted([_key(kept, 2), _key(kept, 3), "backups/notes/readme"])
    assert node.app.telemetry.value("obscura_backup_cleanup_orphans_deleted") == 2
    res = await node.http.get("/v1/backup", headers=kept.auth)
    assert res.status_code == 200 and res.content == b"b" * 40
    # The next round finds nothing more.
    assert await worker.sweep_step() + await worker.sweep_step() + await worker.sweep_step() == 0


async def test_a_cleanup_cycle_runs_a_sweep_step(node):
    await node.app.backup_cleanup.stop()
    dev = await node.device()
    await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})
    await node.execute("DELETE FROM devices WHERE id = $1", dev.device_id)
    assert node.objects() == [_key(dev, 1)]
    await node.app.backup_cleanup.run_cycle()
    assert node.objects() == []


async def test_the_sweep_with_a_prefix_that_is_not_a_folder(node_factory):
    async with node_factory(backup_prefix="bk-") as node:
        await node.app.backup_cleanup.stop()
        kept, gone = await node.device(), await node.device()
        for dev in (kept, gone):
            assert (await _post(node, dev, b"a" * 40, **{"If-None-Match": "*"})).status_code == 200
        await node.app.blobs.put_stream("attachments/x", _chunks(b"n" * 40), max_bytes=100)
        await node.execute("DELETE FROM devices WHERE id = $1", gone.device_id)
        assert await node.app.backup_cleanup.sweep_step() == 1
        assert node.objects() == sorted(["attachments/x", f"bk-{kept.device_id}/v1"])
