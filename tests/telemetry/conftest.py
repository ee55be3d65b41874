"""Telemetry fixtures: a node whose pipeline writes to in-memory exporters instead of a collector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from obscura.app import App
from obscura.telemetry import TelemetryConfig
from tests.telemetry.support import Captured, running_app_with


@pytest.fixture
def captured() -> Captured:
    return Captured()


@pytest.fixture
async def traced_app(settings_factory, captured: Captured) -> AsyncIterator[App]:
    settings = settings_factory()
    async with running_app_with(settings, captured.telemetry(TelemetryConfig.from_settings(settings))) as node:
        yield node


@pytest.fixture
async def traced_http(traced_app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced_app.port}", timeout=10) as client:
        yield client


@pytest.fixture
async def traced_mgmt(traced_app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced_app.mgmt_port}", timeout=10) as client:
        yield client
