"""HTTP test setup: every test runs on uvloop and on the standard asyncio loop; servers are stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import uvloop

from obscura.http import HttpServer
from tests.http.support import start_server


def pytest_asyncio_loop_factories(config, item):  # noqa: ANN001, ARG001 - pytest-asyncio hook
    return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    """``server = await serve(router, **settings_overrides)``; every server is shut down afterwards."""
    servers: list[HttpServer] = []

    async def start(*args: object, **kwargs: object) -> HttpServer:
        server = await start_server(*args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(1.0)
