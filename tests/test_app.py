"""A whole node in-process: management port, readiness per component, docs, JSON errors."""

from __future__ import annotations

import re

import httpx
import pytest

from obscura import __version__
from obscura.store.embedded import EmbeddedPostgres
from tests.fixtures.redis import unique_redis_prefix
from tests.fixtures.s3 import closed_port_url
from tests.fixtures.server import running_app

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def test_livez_is_200_with_empty_body(mgmt):
    res = await mgmt.get("/livez")
    assert res.status_code == 200
    assert res.content == b""


async def test_readyz_healthy_embedded_components(mgmt):
    res = await mgmt.get("/readyz")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "database": "ok", "storage": "ok", "pubsub": "ok"}


async def test_openapi_served_with_version(http):
    res = await http.get("/openapi.yaml")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/yaml")
    assert f"version: {__version__}" in res.text
    assert "version: 0.0.0" not in res.text
    assert UUID_RE.match(res.headers["x-request-id"])


async def test_unknown_path_is_json_404_with_request_id_echoed(http):
    res = await http.get("/v1/nope", headers={"X-Request-ID": "my-trace-123"})
    assert res.status_code == 404
    assert res.json() == {"error": "Not found"}
    assert res.headers["x-request-id"] == "my-trace-123"


async def test_wrong_method_is_json_405(http):
    res = await http.post("/openapi.yaml")
    assert res.status_code == 405
    assert "error" in res.json()


async def test_readyz_503_when_database_stops(tmp_path, settings_factory):
    pg = EmbeddedPostgres(str(tmp_path / "pg"), durable=False)
    dsn = await pg.start()
    try:
        async with running_app(settings_factory(db_url=dsn, health_db_timeout_ms=1000)) as node:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.mgmt_port}") as mgmt:
                assert (await mgmt.get("/readyz")).status_code == 200
                await pg.stop()
                res = await mgmt.get("/readyz")
                assert res.status_code == 503
                assert res.json() == {"status": "error", "database": "error", "storage": "ok", "pubsub": "ok"}
                assert (await mgmt.get("/livez")).status_code == 200
    finally:
        await pg.stop()


async def test_readyz_with_redis_and_s3(settings_factory, redis_url, s3_settings):
    prefix = unique_redis_prefix()
    settings = settings_factory(pubsub_url=redis_url, notifications_channel_prefix=prefix,
                                notifications_push_queue_key=prefix + "jobs", **s3_settings)
    async with running_app(settings) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.mgmt_port}") as mgmt:
            res = await mgmt.get("/readyz")
    assert res.status_code == 200, res.text
    assert res.json()["storage"] == "ok" and res.json()["pubsub"] == "ok"


async def test_readyz_storage_error_for_missing_bucket(settings_factory, s3_settings):
    settings = settings_factory(**{**s3_settings, "storage_bucket": "no-such-bucket-obscura"})
    async with running_app(settings) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.mgmt_port}") as mgmt:
            res = await mgmt.get("/readyz")
    assert res.status_code == 503
    assert res.json() == {"status": "error", "database": "ok", "storage": "error", "pubsub": "ok"}


async def test_readyz_storage_timeout_is_bounded(settings_factory, s3_settings):
    settings = settings_factory(**{**s3_settings, "storage_endpoint": closed_port_url(),
                                   "health_storage_timeout_ms": 200})
    async with running_app(settings) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.mgmt_port}", timeout=5) as mgmt:
            res = await mgmt.get("/readyz")
    assert res.status_code == 503
    assert res.json()["storage"] == "error"
