"""Fixtures of the push tests: a service account, the fake Google endpoints, an APNs key."""

from __future__ import annotations

import pytest

from tests.push.fakes import FakeGoogle, apns_signing_key, write_service_account


@pytest.fixture(scope="session")
def service_account(tmp_path_factory):
    return write_service_account(tmp_path_factory.mktemp("fcm"))


@pytest.fixture(scope="session")
def apns_key(tmp_path_factory):
    return apns_signing_key(tmp_path_factory.mktemp("apns"))


@pytest.fixture
async def google(service_account):
    async with FakeGoogle(service_account) as fake:
        yield fake


class FakeClock:
    """Unix time that only moves when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
