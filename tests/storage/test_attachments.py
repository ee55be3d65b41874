"""Attachments over HTTP on the local and S3 backends: upstream's integration_attachments plus failure paths."""

from __future__ import annotations

import asyncio
import uuid

from tests.http.support import RawConn

PAYLOAD = b"Hello Obscura!"


async def _chunks(*parts: bytes, pause_s: float = 0.0):
    for part in parts:
        if pause_s:
            await asyncio.sleep(pause_s)
        yield part


async def _until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_attachment_lifecycle(node_factory):
    async with node_factory(attachment_max_size_bytes=100) as node:
        dev = await node.device()
        res = await node.http.post("/v1/attachments", content=PAYLOAD, headers=dev.auth)
        assert res.status_code == 201, res.text
        body = res.json()
        att_id = uuid.UUID(body["id"])
        assert att_id.version == 4
        assert node.objects() == [f"attachments/{att_id}"]
        ttl_s = 30 * 86400
        expires = await node.fetchval("SELECT floor(extract(epoch FROM expires_at))::bigint FROM attachments WHERE id = $1",
                                      att_id)
        assert body["expiresAt"] == expires and isinstance(body["expiresAt"], int)
        now = await node.fetchval("SELECT extract(epoch FROM now())::bigint")
        assert abs(expires - now - ttl_s) < 60

        res = await node.http.get(f"/v1/attachments/{att_id}", headers=dev.auth)
        assert res.status_code == 200
        assert res.content == PAYLOAD
        assert res.headers["content-type"] == "application/octet-stream"
        assert res.headers["content-length"] == str(len(PAYLOAD))
        assert res.headers["etag"] == f'"{att_id}"'

        res = await node.http.post("/v1/attachments", content=b"x" * 101, headers=dev.auth)
        assert (res.status_code, res.json()) == (413, {"error": "Payload too large"})
        res = await node.http.post("/v1/attachments", content=_chunks(b"abc", b"def"), headers=dev.auth)
        assert (res.status_code, res.json()) == (411, {"error": "Length required"})
        res = await node.http.get(f"/v1/attachments/{uuid.uuid4()}", headers=dev.auth)
        assert (res.status_code, res.json()) == (404, {"error": "Not found"})
        assert node.objects() == [f"attachments/{att_id}"]
        assert await node.fetchval("SELECT count(*) FROM attachments") == 1
        assert node.app.telemetry.value("obscura_attachment_upload_bytes_total") == len(PAYLOAD)
        assert node.app.telemetry.value("obscura_attachment_upload_size_bytes") == (1, len(PAYLOAD))


async def test_attachment_min_size(node_factory):
    async with node_factory(attachment_min_size_bytes=5) as node:
        dev = await node.device()
        res = await node.http.post("/v1/attachments", content=b"1234", headers=dev.auth)
        assert (res.status_code, res.json()) == (400, {"error": "Attachment too small"})
        res = await node.http.post("/v1/attachments", content=b"12345", headers=dev.auth)
        assert res.status_code == 201
        res = await node.http.post("/v1/attachments", content=b"", headers=dev.auth)
        assert (res.status_code, res.json()) == (400, {"error": "Attachment too small"})
        assert len(node.objects()) == 1


async def test_attachment_conditional_download(node):
    dev = await node.device()
    att_id = (await node.http.post("/v1/attachments", content=PAYLOAD, headers=dev.auth)).json()["id"]
    res = await node.http.get(f"/v1/attachments/{att_id}", headers={**dev.auth, "If-None-Match": f'"{att_id}"'})
    assert res.status_code == 304 and res.content == b""
    res = await node.http.get(f"/v1/attachments/{att_id}", headers={**dev.auth, "If-None-Match": '"different-id"'})
    assert res.status_code == 200 and res.content == PAYLOAD
    # Like upstream, a matching tag is a 304 without looking the id up (spec §13 item 7).
    other = uuid.uuid4()
    res = await node.http.get(f"/v1/attachments/{other}", headers={**dev.auth, "If-None-Match": str(other)})
    assert res.status_code == 304


async def test_attachment_auth_scope_and_bad_ids(node):
    dev = await node.device()
    res = await node.http.post("/v1/attachments", content=PAYLOAD)
    assert (res.status_code, res.json()) == (401, {"error": "Unauthorized"})
    res = await node.http.post("/v1/attachments", content=PAYLOAD, headers=dev.user_auth)  # any scope
    assert res.status_code == 201
    att_id = res.json()["id"]
    other = await node.device()  # no owner: any account that knows the id can read it
    assert (await node.http.get(f"/v1/attachments/{att_id}", headers=other.auth)).content == PAYLOAD
    res = await node.http.get(f"/v1/attachments/{att_id}")
    assert res.status_code == 401
    res = await node.http.get("/v1/attachments/not-a-uuid", headers=dev.auth)
    assert res.status_code == 400 and res.json()["error"].startswith("Invalid URL")
    res = await node.http.head(f"/v1/attachments/{att_id}", headers=dev.auth)
    assert res.status_code == 200 and res.headers["content-length"] == str(len(PAYLOAD)) and res.content == b""


async def test_expired_attachment_is_404_and_cleaned_blob_first(node):
    """Upstream's test_attachment_cleanup: an expired row and its object both go."""
    dev = await node.device()
    keep = (await node.http.post("/v1/attachments", content=b"keep", headers=dev.auth)).json()["id"]
    old = uuid.UUID((await node.http.post("/v1/attachments", content=b"old", headers=dev.auth)).json()["id"])
    await node.execute("UPDATE attachments SET expires_at = now() - interval '1 second' WHERE id = $1", old)
    res = await node.http.get(f"/v1/attachments/{old}", headers=dev.auth)
    assert res.status_code == 404
    assert await node.app.attachment_cleanup.cleanup_batch() >= 1
    assert node.objects() == [f"attachments/{keep}"]
    assert await node.fetchval("SELECT count(*) FROM attachments WHERE id = $1", old) == 0
    assert node.app.telemetry.value("obscura_attachments_deleted_total") == 1


async def test_row_without_object_reads_as_404(node):
    dev = await node.device()
    att_id = (await node.http.post("/v1/attachments", content=PAYLOAD, headers=dev.auth)).json()["id"]
    await node.app.blobs.delete(f"attachments/{att_id}")
    assert (await node.http.get(f"/v1/attachments/{att_id}", headers=dev.auth)).status_code == 404


async def test_not_rate_limited(node_factory):
    async with node_factory(rate_limit_per_second=1, rate_limit_burst=1) as node:
        dev = await node.device()
        for _ in range(5):
            res = await node.http.post("/v1/attachments", content=PAYLOAD, headers=dev.auth)
            assert res.status_code == 201
            assert (await node.http.get(f"/v1/attachments/{res.json()['id']}", headers=dev.auth)).status_code == 200


async def test_client_disconnect_mid_upload_leaves_nothing(node):
    dev = await node.device()
    conn = await RawConn.open(node.app.port)
    await conn.send(f"POST /v1/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
                    f"Content-Length: 1000\r\n\r\n".encode() + b"x" * 400)

    async def row_exists() -> bool:
        return await node.fetchval("SELECT count(*) FROM attachments") == 1

    await _until(row_exists)  # the upload is under way
    conn.writer.transport.abort()

    async def all_gone() -> bool:
        return await node.fetchval("SELECT count(*) FROM attachments") == 0 and node.objects() == []

    await _until(all_gone)


async def test_body_beyond_declared_length_is_not_stored(node):
    """A client that sends more than it declared: the body ends at Content-Length (HTTP framing),
    only those bytes are stored, and the excess is parsed as a (malformed) next request."""
    dev = await node.device()
    conn = await RawConn.open(node.app.port)
    await conn.send(f"POST /v1/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
                    f"Content-Length: 5\r\n\r\n".encode() + b"12345" + b"Z" * 200)
    first = await conn.response()
    assert first.status == 201
    att_id = first.json()["id"]
    second = await conn.response()
    assert second.status == 400
    conn.close()
    assert (await node.http.get(f"/v1/attachments/{att_id}", headers=dev.auth)).content == b"12345"


async def test_short_body_then_close_leaves_nothing(node):
    dev = await node.device()
    conn = await RawConn.open(node.app.port)
    await conn.send(f"POST /v1/attachments HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
                    f"Content-Length: 100\r\n\r\n".encode() + b"x" * 10)
    conn.writer.write_eof()
    await conn.read_to_eof()
    conn.close()

    async def all_gone() -> bool:
        return await node.fetchval("SELECT count(*) FROM attachments") == 0 and node.objects() == []

    await _until(all_gone)
