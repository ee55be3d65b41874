"""Fixtures for the coordination contract suite: one backend per parameter, isolated per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from obscura.coord import Coordinator
from tests.coord.support import CoordEnv, FakeClock, coord_settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def coord_env(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[CoordEnv]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    env = CoordEnv(request.param, coord_settings(), clock, url)
    try:
        yield env
    finally:
        await env.close()


@pytest.fixture
async def coordinator(coord_env: CoordEnv) -> Coordinator:
    return await coord_env.make()

