"""Fixtures for attachment and backup tests: a node per test on the local or the S3 (moto) backend."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from obscura._speedups import uuid7
from obscura.app import App
from tests.fixtures.server import running_app

BACKENDS = ("local", "s3")


@dataclass
class Device:
    """A user with one device, inserted directly (no dependency on the accounts endpoints)."""

    user_id: uuid.UUID
    device_id: uuid.UUID
    token: str
    user_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def user_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_token}"}


async def make_device(app: App) -> Device:
    user_id, device_id = uuid7(), uuid7()
    async with app.database.acquire() as conn:
        await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')",
                           user_id, f"u_{user_id.hex}")
        await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", device_id, user_id)
    return Device(user_id, device_id, app.tokens.issue(user_id, device_id)[0], app.tokens.issue(user_id)[0])


@dataclass
class Node:
    """A running app, a client on its main port, and a view of everything in its blob store."""

    kind: str
    app: App
    http: httpx.AsyncClient
    s3_client: Any = None
    bucket: str | None = None
    root: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    async def device(self) -> Device:
        return await make_device(self.app)

    def objects(self) -> list[str]:
        """Every object (and any incomplete multipart upload) in the backend."""
        if self.kind == "s3":
            objs = self.s3_client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            ups = self.s3_client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
            return sorted([o["Key"] for o in objs] + [f"upload:{u['Key']}" for u in ups])
        found = []
        for dirpath, _dirs, files in os.walk(self.root or ""):
            found += [os.path.relpath(os.path.join(dirpath, f), self.root) for f in files]
        return sorted(found)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.app.database.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.app.database.acquire() as conn:
            await conn.execute(sql, *args)


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def storage_overrides(backend_kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
    if backend_kind == "s3":
        return dict(request.getfixturevalue("s3_settings"))
    return {"storage_backend": "local", "storage_local_path": str(tmp_path / "blobs")}


@pytest.fixture
def node_factory(backend_kind: str, storage_overrides: dict[str, Any], settings_factory: Callable[..., Any],
                 fresh_database_url: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``async with node_factory(**setting_overrides) as node:`` a node on this test's backend and
    its own database, so row counts see only this test's rows."""

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Node]:
        settings = settings_factory(**{"db_url": fresh_database_url, **storage_overrides, **overrides})
        async with running_app(settings) as app:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=30) as client:
                node = Node(backend_kind, app, client, root=storage_overrides.get("storage_local_path"))
                if backend_kind == "s3":
                    node.s3_client = request.getfixturevalue("s3_client")
                    node.bucket = storage_overrides["storage_bucket"]
                yield node

    return make


@pytest.fixture
async def node(node_factory: Callable[..., Any]) -> AsyncIterator[Node]:
    async with node_factory() as n:
        yield n
