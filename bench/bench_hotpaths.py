"""Micro-benchmarks of the per-request hot paths: UUIDv7 and ids, JWT verification, routing, ACK coalescing.

Run: .venv/bin/pytest bench/bench_hotpaths.py --benchmark-group-by=group --benchmark-columns=min,median,ops
(performance.md "How to measure"; one row per implementation so the ratio is visible.)
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from obscura import _speedups, ids
from obscura.gateway.acks import AckBatcher
from obscura.http.router import Router
from obscura.services.tokens import TokenService
from obscura.telemetry import Telemetry

UUID7 = [pytest.param(m, id=k) for k, m in _speedups.implementations("uuid7").items()]
SECRET = "a-benchmark-secret-that-is-32-bytes-long!"


@pytest.mark.benchmark(group="uuid7 as uuid.UUID")
@pytest.mark.parametrize("twin", UUID7)
def test_uuid7(benchmark, twin):
    assert benchmark(twin.uuid7).version == 7


@pytest.mark.benchmark(group="uuid7 as uuid.UUID")
def test_uuid4_stdlib(benchmark):
    """Reference row: the standard library's random UUID."""
    assert benchmark(uuid.uuid4).version == 4


@pytest.mark.benchmark(group="uuid7 as uuid.UUID")
def test_new_message_id(benchmark):
    """What a send uses (obscura.ids): the compiled twin's bytes as asyncpg's C UUID."""
    assert benchmark(ids.new_message_id).version == 7


RAW_ID = uuid.uuid4().bytes
FROM_BYTES = {"uuid.UUID(bytes=)": lambda raw: uuid.UUID(bytes=raw), "obscura.ids (asyncpg type)": ids.uuid_from_bytes}


@pytest.mark.benchmark(group="UUID from 16 bytes (per submission and ACKed id)")
@pytest.mark.parametrize("name", FROM_BYTES)
def test_uuid_from_bytes(benchmark, name):
    assert benchmark(FROM_BYTES[name], RAW_ID).bytes == RAW_ID


@pytest.mark.benchmark(group="JWT verify (HS256)")
def test_jwt_verify_cached(benchmark):
    tokens = TokenService(SECRET, 3600)
    token, _ = tokens.issue(uuid.uuid4(), uuid.uuid4())
    tokens.verify(token)
    assert benchmark(tokens.verify, token).device_id is not None


@pytest.mark.benchmark(group="JWT verify (HS256)")
def test_jwt_verify_uncached(benchmark):
    tokens = TokenService(SECRET, 3600, cache_size=0)
    token, _ = tokens.issue(uuid.uuid4(), uuid.uuid4())
    assert benchmark(tokens.verify, token).device_id is not None


def _api_router() -> Router:
    """A router shaped like the node's: a few dozen static and parameterized templates."""
    async def handler(request):  # pragma: no cover - never called
        raise AssertionError
    router = Router()
    for pattern in ("/v1/users", "/v1/sessions", "/v1/sessions/refresh", "/v1/devices", "/v1/devices/{deviceId}",
                    "/v1/keys/{userId}", "/v1/keys/{userId}/{deviceId}", "/v1/keys/prekeys", "/v1/keys/signed",
                    "/v1/messages", "/v1/gateway/ticket", "/v1/attachments", "/v1/attachments/{id}",
                    "/v1/backups", "/v1/backups/{slot}", "/v1/push/token", "/openapi.yaml", "/docs"):
        for method in ("GET", "POST", "PUT", "DELETE"):
            router.add(method, pattern, handler)
    return router


@pytest.mark.benchmark(group="route match")
def test_route_static(benchmark):
    router = _api_router()
    route, params = benchmark(router.match, "POST", "/v1/messages")
    assert route.pattern == "/v1/messages" and params == {}


@pytest.mark.benchmark(group="route match")
def test_route_two_params(benchmark):
    router = _api_router()
    path = f"/v1/keys/{uuid.uuid4()}/{uuid.uuid4()}"
    route, params = benchmark(router.match, "GET", path)
    assert route.pattern == "/v1/keys/{userId}/{deviceId}" and len(params) == 2


@pytest.mark.benchmark(group="ACK coalescing: 1000 ids in frames of 4")
def test_ack_coalescing(benchmark):
    """Decode 250 ACK frames of 4 ids and feed the batcher, then one flush: deletes per id."""
    ids = [uuid.uuid4().bytes for _ in range(1000)]
    frames = [b"\x5a" + _speedups.encode_varint(72) + b"".join(b"\x0a\x10" + i for i in ids[k:k + 4])
              for k in range(0, 1000, 4)]
    calls = []

    async def delete(batch):
        calls.append(len(batch))
        return len(batch)

    loop = asyncio.new_event_loop()
    try:
        batcher = loop.run_until_complete(_make_batcher(delete))

        def run():
            for frame in frames:
                _, raw = _speedups.decode_client_frame(frame)
                batcher.add([uuid.UUID(bytes=bytes(r)) for r in raw])
            loop.run_until_complete(batcher.flush())
        benchmark(run)
    finally:
        loop.close()
    assert calls[:10] == [100] * 10  # 1000 ids become 10 deletes


async def _make_batcher(delete) -> AckBatcher:
    return AckBatcher(delete, Telemetry(),
                      batch_size=100, flush_interval_s=0.5, capacity=100_000)
