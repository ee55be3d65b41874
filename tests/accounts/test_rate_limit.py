"""Rate limiting per client IP with GCRA, tiers and X-Forwarded-For (spec §6.7; upstream
integration_rate_limit, probing GET /v1/users/<random>, which is a 404)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest

from obscura.services.ratelimit import GcraLimiter, client_ip
from obscura.config import load_settings
from tests.fixtures.server import running_app
from tests.support.users import bearer, register_user


@contextlib.asynccontextmanager
async def limited(settings_factory, **limits):
    """A node with the given limits; a device token minted directly so no request is spent."""
    async with running_app(settings_factory(**limits)) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            yield node, http


async def _device_token(node) -> str:
    from obscura._speedups import uuid7
    user_id, device_id = uuid7(), uuid7()
    async with node.database.acquire() as conn:
        await conn.execute("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, 'x')",
                           user_id, f"rl_{uuid.uuid4().hex[:10]}")
        await conn.execute("INSERT INTO devices (id, user_id) VALUES ($1, $2)", device_id, user_id)
    return node.tokens.issue(user_id, device_id)[0]


async def probe(http, token, xff: str | None = None) -> int:
    headers = bearer(token)
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    res = await http.get(f"/v1/users/{uuid.uuid4()}", headers=headers)
    return res.status_code


async def test_isolation_per_ip(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=2) as (node, http):
        token = await _device_token(node)
        assert [await probe(http, token, "1.1.1.1") for _ in range(3)] == [404, 404, 429]
        assert await probe(http, token, "2.2.2.2") == 404


async def test_proxy_chain_uses_rightmost_untrusted(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=2) as (node, http):
        token = await _device_token(node)
        assert await probe(http, token, "9.9.9.9, 1.1.1.1, 2.2.2.2") == 404
        assert await probe(http, token, "9.9.9.9, 1.1.1.1, 2.2.2.2") == 404
        assert await probe(http, token, "different.spoof, 2.2.2.2") == 429


async def test_spoofing_protection(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=1) as (node, http):
        token = await _device_token(node)
        assert await probe(http, token, "1.2.3.4, 5.6.7.8") == 404
        assert await probe(http, token, "9.9.9.9, 5.6.7.8") == 429
        assert await probe(http, token, "1.2.3.4") == 404


async def test_concurrent_distinct_ips_all_pass(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=1) as (node, http):
        token = await _device_token(node)
        codes = await asyncio.gather(*(probe(http, token, f"10.10.10.{i}") for i in range(20)))
        assert codes == [404] * 20


async def test_fallback_to_peer_ip_without_xff(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=3) as (node, http):
        token = await _device_token(node)
        assert [await probe(http, token) for _ in range(4)] == [404, 404, 404, 429]


async def test_untrusted_peer_xff_is_ignored(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=1,
                       server_trusted_proxies="10.0.0.0/8") as (node, http):
        token = await _device_token(node)
        assert await probe(http, token, "1.1.1.1") == 404
        assert await probe(http, token, "2.2.2.2") == 429  # same peer (127.0.0.1): XFF not believed


async def test_tiers_are_independent(settings_factory):
    async with limited(settings_factory, rate_limit_auth_per_second=1, rate_limit_auth_burst=1,
                       rate_limit_per_second=10, rate_limit_burst=10) as (node, http):
        token = await _device_token(node)
        codes = [(await http.post("/v1/users", json={"username": f"t_{uuid.uuid4().hex[:8]}",
                                                      "password": "password12345"})).status_code
                 for _ in range(3)]
        assert codes[0] == 201 and codes[-1] == 429
        assert [await probe(http, token) for _ in range(5)] == [404] * 5


async def test_recovery_and_retry_after(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=1) as (node, http):
        token = await _device_token(node)
        assert await probe(http, token, "3.3.3.3") == 404
        res = await http.get(f"/v1/users/{uuid.uuid4()}", headers={**bearer(token), "X-Forwarded-For": "3.3.3.3"})
        assert res.status_code == 429
        assert res.headers["retry-after"] == res.headers["x-ratelimit-after"]
        assert res.headers["content-type"] == "application/json"
        assert res.json()["error"].startswith("Too Many Requests! Wait for ")
        assert node.telemetry.value("obscura_rate_limit_decisions_total", {"status": "throttled"}) == 1
        await asyncio.sleep(1.1)
        assert await probe(http, token, "3.3.3.3") == 404


async def test_attachments_backups_docs_and_management_are_untiered(settings_factory):
    async with limited(settings_factory, rate_limit_per_second=1, rate_limit_burst=1) as (node, http):
        codes = [(await http.get("/openapi.yaml")).status_code for _ in range(5)]
        assert codes == [200] * 5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.mgmt_port}") as mgmt:
            assert [(await mgmt.get("/livez")).status_code for _ in range(5)] == [200] * 5


# -- units -------------------------------------------------------------------------------------

TRUSTED = load_settings(environ={}, server_trusted_proxies="127.0.0.1/32,::1/128").server_trusted_proxies


@pytest.mark.parametrize("peer,xff,expected", [
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "9.9.9.9, 1.1.1.1, 2.2.2.2", "2.2.2.2"),
    ("127.0.0.1", "different.spoof, 2.2.2.2", "2.2.2.2"),
    ("127.0.0.1", "1.2.3.4, 127.0.0.1", "1.2.3.4"),
    ("127.0.0.1", "127.0.0.1, ::1", "127.0.0.1"),
    ("127.0.0.1", "garbage", "127.0.0.1"),
    ("8.8.8.8", "1.1.1.1", "8.8.8.8"),
    ("::1", "2001:db8::1", "2001:db8::1"),
    ("::ffff:127.0.0.1", "4.4.4.4", "4.4.4.4"),
])
def test_client_ip_resolution(peer, xff, expected):
    assert client_ip(peer, xff, TRUSTED) == expected


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_gcra_burst_then_rate():
    clock = FakeClock()
    gcra = GcraLimiter(2, 3, clock=clock)
    assert [gcra.check("a") for _ in range(3)] == [None, None, None]
    wait = gcra.check("a")
    assert wait is not None and 0.49 < wait <= 0.5
    clock.t += 0.5
    assert gcra.check("a") is None
    assert gcra.check("a") is not None


def test_gcra_memory_is_bounded_under_address_rotation():
    clock = FakeClock()
    gcra = GcraLimiter(10, 20, clock=clock, max_keys=1000)
    for i in range(50_000):
        gcra.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(gcra) <= 1000
    clock.t += 60  # idle keys are fully replenished and forgotten
    gcra.check("fresh")
    assert len(gcra) == 1
