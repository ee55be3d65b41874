"""Route timeouts (spec §12 integration_timeouts): 408 JSON, attachment and backup timeouts independent."""

from __future__ import annotations

import asyncio

import pytest

from tests.http.support import RawConn
from tests.storage.conftest import Device, Node


@pytest.fixture
def backend_kind() -> str:
    return "local"  # the timeouts are the front door's; the backend does not matter


async def _stalled(node: Node, head: str, first: bytes, *, timeout_s: float = 10.0):
    """Send the head and part of the body, then nothing: the server's answer."""
    conn = await RawConn.open(node.app.port)
    try:
        await conn.send(head.encode() + first)
        return await conn.response(timeout=timeout_s)
    finally:
        conn.close()


def _upload_head(path: str, dev: Device, length: int, extra: str = "") -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {dev.auth['Authorization']}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n")


async def test_standard_request_timeout(node_factory):
    async with node_factory(server_request_timeout_secs=1) as node:
        res = await _stalled(node, "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   "Content-Length: 60\r\n\r\n", b'{"username":')
        assert (res.status, res.json()) == (408, {"error": "Request timeout"})


async def test_backup_upload_timeout(node_factory):
    async with node_factory(backup_timeout_secs=1) as node:
        dev = await node.device()
        res = await _stalled(node, _upload_head("/v1/backup", dev, 100, "If-None-Match: *\r\n"), b"x" * 10)
        assert (res.status, res.json()) == (408, {"error": "Request timeout"})
        async with node.app.database.acquire() as conn:
            assert await conn.fetchval("SELECT state FROM backups WHERE device_id = $1", dev.device_id) == "ACTIVE"
        assert node.objects() == []


async def test_attachment_upload_timeout(node_factory):
    async with node_factory(attachment_timeout_secs=1) as node:
        dev = await node.device()
        res = await _stalled(node, _upload_head("/v1/attachments", dev, 100), b"x" * 10)
        assert (res.status, res.json()) == (408, {"error": "Request timeout"})
        assert await node.fetchval("SELECT count(*) FROM attachments") == 0
        assert node.objects() == []


async def test_global_safety_timeout(node_factory):
    async with node_factory(server_global_timeout_secs=2, server_request_timeout_secs=30) as node:
        dev = await node.device()
        res = await _stalled(node, _upload_head("/v1/attachments", dev, 100), b"x" * 10)
        assert (res.status, res.json()) == (408, {"error": "Request timeout"})


async def test_attachment_timeout_independence(node_factory):
    """A slow attachment is not cut by the (shorter) backup or request timeouts."""
    async with node_factory(attachment_timeout_secs=5, backup_timeout_secs=1,
                            server_request_timeout_secs=1) as node:
        dev = await node.device()
        conn = await RawConn.open(node.app.port)
        await conn.send(_upload_head("/v1/attachments", dev, 20).encode() + b"x" * 10)
        await asyncio.sleep(1.5)
        await conn.send(b"y" * 10)
        res = await conn.response()
        conn.close()
        assert res.status == 201, res.body
