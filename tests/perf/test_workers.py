"""`obscura serve --workers N`: workers share the port through Redis; SIGTERM stops them all (issue 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx

from tests.fixtures.redis import unique_redis_prefix
from tests.fixtures.server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OBSCURA_") or k in (
        "OBSCURA_NO_EXTENSIONS", "OBSCURA_REQUIRE_EXTENSIONS")}
    return {**base, "OBSCURA_SERVER_HOST": "127.0.0.1", "OBSCURA_STORAGE_BACKEND": "memory",
            "OBSCURA_TELEMETRY_LOG_LEVEL": "warning", **extra}


def _workers(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(p) for p in f.read().split()]
    out = []
    for kid in kids:
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    out.append(kid)
        except OSError:
            pass
    return out


def test_two_workers_serve_and_sigterm_stops_both(database_url, redis_url, tmp_path):
    port, mgmt = free_port(), free_port()
    prefix = unique_redis_prefix()
    env = _env(OBSCURA_SERVER_PORT=str(port), OBSCURA_SERVER_MGMT_PORT=str(mgmt), OBSCURA_DATABASE_URL=database_url,
               OBSCURA_PUBSUB_URL=redis_url, OBSCURA_NOTIFICATIONS_CHANNEL_PREFIX=prefix,
               OBSCURA_DATA_DIR=str(tmp_path), OBSCURA_TELEMETRY_PROMETHEUS_ENABLED="true")
    proc = subprocess.Popen([sys.executable, "-m", "obscura", "serve", "--workers", "2"], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the supervisor exited early"
            workers = _workers(proc.pid)
            try:
                ready = httpx.get(f"http://127.0.0.1:{mgmt}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and len(workers) == 2 and _both_listening(port, workers):
                break
            assert time.monotonic() < deadline, "workers did not come up"
            time.sleep(0.2)
        # Requests on fresh connections land on either worker (SO_REUSEPORT); all are answered.
        for _ in range(30):
            res = httpx.post(f"http://127.0.0.1:{port}/v1/messages", content=b"",
                             headers={"Connection": "close"}, timeout=5)
            assert res.status_code == 401
        # The management port is the supervisor's: one scrape reports every worker, so the
        # node's count is exact (a worker would only know its own share).
        assert _listeners(mgmt) == {proc.pid}
        counts = _samples(httpx.get(f"http://127.0.0.1:{mgmt}/metrics", timeout=10).text,
                          'http_server_requests_total{worker="', 'method="POST",route="/v1/messages",status="401"}')
        assert sum(counts.values()) == 30 and set(counts) == {"0", "1"}  # 2 x 0.5**30: both got some
        ready = httpx.get(f"http://127.0.0.1:{mgmt}/readyz", timeout=10)
        assert ready.json() == {"status": "ok", "database": "ok", "storage": "ok", "pubsub": "ok"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for pid in workers:
            assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _samples(text: str, prefix: str, suffix: str) -> dict[str, float]:
    """{worker label: value} of the samples ``prefix<worker>",...suffix value``."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(prefix) and name.endswith(suffix):
            out[name[len(prefix):].split('"', 1)[0]] = float(value)
    return out


def _listeners(port: int) -> set[int]:
    """PIDs holding a listening socket on the port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if inodes & {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}:
                pids.add(int(pid))
        except OSError:
            pass
    return pids


def _both_listening(port: int, workers: list[int]) -> bool:
    """Each worker holds its own listening socket on the port (SO_REUSEPORT)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].split(":")[1], 16) == port:
                inodes.add(parts[9])
    owners = 0
    for pid in workers:
        try:
            fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            return False
        owners += any(f"socket:[{i}]" in fds for i in inodes)
    return owners == 2


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_several_workers_without_redis_is_a_clear_error(tmp_path):
    env = _env(OBSCURA_SERVER_PORT=str(free_port()), OBSCURA_SERVER_MGMT_PORT=str(free_port()),
               OBSCURA_DATA_DIR=str(tmp_path), OBSCURA_WORKERS="2")
    res = subprocess.run([sys.executable, "-m", "obscura", "serve"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert "OBSCURA_PUBSUB_URL" in res.stderr and "only one worker" in res.stderr
