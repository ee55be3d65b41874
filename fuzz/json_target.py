"""Fuzz target for every JSON request body (registration, sessions, devices, keys, push tokens).

Bodies go through a real in-process App (real PostgreSQL), so the whole handler runs: parsing,
validation, the service and the store. Any answer must be a documented 4xx with a JSON
``{"error": "..."}`` body, or a success; never a 5xx. The first byte picks the operation, the
rest is the body (seeds are valid bodies, so mutations stay near the schema).

Run:   OBSCURA_DB_URL=postgresql://... .venv/bin/python fuzz/json_target.py /tmp/json-corpus \
           fuzz/corpus/json -max_total_time=600
(without it the App starts its embedded PostgreSQL in a temporary folder, which fuzz/pg_watchdog.py
stops when the fuzzer exits).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import httpx

__all__ = ["JsonHarness", "OPERATIONS"]

# (method, path, credential): "none", "user" (user-scoped token) or "device" (device-scoped).
OPERATIONS = [
    ("POST", "/v1/users", "none"),
    ("POST", "/v1/sessions", "none"),
    ("POST", "/v1/sessions/refresh", "none"),
    ("DELETE", "/v1/sessions", "user"),
    ("POST", "/v1/devices", "user"),
    ("PUT", "/v1/devices/{device}", "device"),
    ("POST", "/v1/devices/keys", "device"),
    ("PUT", "/v1/push-tokens", "device"),
]
# What a client may be told about its body (spec §2.1): 409 for a taken username or the device cap.
DOCUMENTED = {200, 201, 400, 401, 403, 404, 409, 413, 415, 422}


class JsonHarness:
    """One registered user with one device; check() sends a fuzzed body to one operation."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.user_token = self.device_token = self.device_id = ""

    async def setup(self) -> None:
        from tests.support.users import add_device, register

        user = await add_device(self.client, await register(self.client))
        self.user_token, self.device_token = user.user_token, user.token
        self.device_id = str(user.device_id)

    async def check(self, data: bytes) -> None:
        """Raise AssertionError when the server answers ``data`` with a 5xx or an undocumented status."""
        if not data:
            return
        method, path, cred = OPERATIONS[data[0] % len(OPERATIONS)]
        headers = {"content-type": "application/json"}
        token = {"user": self.user_token, "device": self.device_token}.get(cred)
        if token:
            headers["authorization"] = f"Bearer {token}"
        res = await self.client.request(method, path.replace("{device}", self.device_id),
                                        content=data[1:], headers=headers)
        assert res.status_code in DOCUMENTED, (method, path, res.status_code, res.text[:200])
        if res.status_code >= 400:
            error = res.json()["error"]
            assert isinstance(error, str) and error, res.text[:200]


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from obscura.app import App
    from tests.fixtures.server import test_settings

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    data_dir = tempfile.mkdtemp(prefix="obscura-fuzz-")
    os.chmod(data_dir, 0o711)  # as root the embedded server runs as another user (tests/fixtures/postgres.py)
    db_url = os.environ.get("OBSCURA_DB_URL")
    overrides = {"db_url": db_url} if db_url else {}
    if not db_url:  # an embedded server: stopped by a watchdog once libFuzzer exit()s this process
        import subprocess
        subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "pg_watchdog.py"),
                          str(os.getpid()), data_dir], start_new_session=True)
    app = App(test_settings(data_dir=data_dir, server_access_log=False, auth_max_devices_per_user=1000, **overrides))
    loop.run_until_complete(app.start())
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.port}", timeout=30)
    harness = JsonHarness(client)
    loop.run_until_complete(harness.setup())
    run_fuzzer(lambda data: loop.run_until_complete(harness.check(data)))


if __name__ == "__main__":
    main()
