"""Driver building blocks: server subprocesses, test users, the echo and batched-PostgreSQL baselines."""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import asyncpg
import httpx

from bench import loadgen
from bench.pgutil import create_scratch, drop_scratch, seed_devices
from bench.procstat import children, cpu_s, rss_bytes

__all__ = ["Server", "free_port", "make_users", "tickets", "echo_baseline", "pg_ceiling", "CTX", "ROOT"]

CTX = mp.get_context("spawn")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "obscura-bench-secret-" + "x" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real ``python -m obscura serve`` subprocess on 127.0.0.1 (performance.md: the server under test)."""

    def __init__(self, env: dict[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.mgmt_port = free_port()
        while self.mgmt_port == self.port:  # the kernel may hand the same free port out twice; with
            self.mgmt_port = free_port()    # SO_REUSEPORT both listeners would then share it
        self.data_dir = tempfile.mkdtemp(prefix="obscura-bench-")
        base = {k: v for k, v in os.environ.items() if not k.startswith("OBSCURA_") or k in (
            "OBSCURA_NO_EXTENSIONS", "OBSCURA_REQUIRE_EXTENSIONS")}
        self.env = {**base, "OBSCURA_SERVER_HOST": "127.0.0.1", "OBSCURA_SERVER_PORT": str(self.port),
                    "OBSCURA_SERVER_MGMT_PORT": str(self.mgmt_port), "OBSCURA_DATA_DIR": self.data_dir,
                    "OBSCURA_AUTH_JWT_SECRET": SECRET, "OBSCURA_TELEMETRY_LOG_LEVEL": "warning",
                    "OBSCURA_RATE_LIMIT_PER_SECOND": "1000000", "OBSCURA_RATE_LIMIT_BURST": "1000000",
                    "OBSCURA_RATE_LIMIT_AUTH_PER_SECOND": "1000000", "OBSCURA_RATE_LIMIT_AUTH_BURST": "1000000",
                    "OBSCURA_STORAGE_BACKEND": "memory",
                    # /metrics on the management port: the delivery latency histogram (goal 3)
                    "OBSCURA_TELEMETRY_PROMETHEUS_ENABLED": "true", **env}
        self.args = ["--workers", str(workers)] if workers > 1 else []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> Server:
        profile = os.environ.get("OBSCURA_BENCH_PROFILE")  # a path: run the node under cProfile
        wrap = ["-m", "cProfile", "-o", f"{profile}.{self.port}"] if profile else []
        self.proc = subprocess.Popen([sys.executable, *wrap, "-m", "obscura", "serve", *self.args], env=self.env,
                                     cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.mgmt_port}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready")

    def pids(self) -> list[int]:
        """The node's event-loop processes: the server and its worker children, not PostgreSQL."""
        assert self.proc is not None
        out = [self.proc.pid]
        for child in children(self.proc.pid):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():  # a --workers child, not PostgreSQL or the resource tracker
                        out.append(child)
            except OSError:
                pass
        return out

    def histogram(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts {upper bound: count} of one histogram from /metrics (all label
        sets summed, the workers of a --workers node included; +Inf as math.inf)."""
        text = httpx.get(f"http://127.0.0.1:{self.mgmt_port}/metrics", timeout=10).text
        buckets: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = math.inf if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        return buckets

    def cpu_s(self) -> float:
        return sum(_safe(cpu_s, p) for p in self.pids())

    def rss_bytes(self) -> int:
        return sum(_safe(rss_bytes, p) for p in self.pids())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _safe(fn, pid):
    try:
        return fn(pid)
    except OSError:
        return 0


async def make_users(port: int, count: int, concurrency: int = 8, host: str = "127.0.0.1") -> list[tuple[str, str]]:
    """Register ``count`` users with one device each over the API: [(device token, device id)]."""
    sys.path.insert(0, ROOT)
    from tests.support.signal_keys import key_bundle

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as http:
        async def one() -> tuple[str, str]:
            async with sem:
                name = f"bench_{uuid.uuid4().hex[:16]}"
                res = await http.post("/v1/users", json={"username": name, "password": "password12345"})
                res.raise_for_status()
                token = res.json()["token"]
                res = await http.post("/v1/devices", json=key_bundle(otpk_count=100),
                                      headers={"Authorization": f"Bearer {token}"})
                res.raise_for_status()
                return res.json()["token"], res.json()["deviceId"]
        return list(await asyncio.gather(*(one() for _ in range(count))))


async def tickets(port: int, tokens: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        out = []
        for token in tokens:
            res = await http.post("/v1/gateway/ticket", headers={"Authorization": f"Bearer {token}"})
            res.raise_for_status()
            out.append(f"ws://127.0.0.1:{port}/v1/gateway?ticket={res.json()['ticket']}")
        return out


def echo_baseline(seconds: float, *, procs: int = 2, conns: int = 50) -> dict:
    """picows echo server + picows clients, 100 connections x 8 in flight: server CPU per echo."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(port), str(seconds + 30)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdout.readline()
        phase, counters = CTX.Value("i", 0), [CTX.RawValue("q", 0) for _ in range(procs)]
        clients = [CTX.Process(target=loadgen.echo_client_main, args=(f"ws://127.0.0.1:{port}/", conns, phase, c))
                   for c in counters]
        for c in clients:
            c.start()
        time.sleep(1.5)  # connect and warm up
        n0, c0, t0 = sum(c.value for c in counters), cpu_s(server.pid), time.monotonic()
        time.sleep(seconds)
        n1, c1, t1 = sum(c.value for c in counters), cpu_s(server.pid), time.monotonic()
        phase.value = loadgen.STOP
        for c in clients:
            c.join(10)
        echoes = max(n1 - n0, 1)
        return {"echo_per_s": echoes / (t1 - t0), "server_cpu_us_per_echo": (c1 - c0) / echoes * 1e6}
    finally:
        server.terminate()
        server.wait(10)


async def _ceiling_worker(url: str, sender: tuple, targets: list, deadline: float, batch: int) -> int:
    conn = await asyncpg.connect(url)
    content, done = os.urandom(256), 0
    try:
        while time.monotonic() < deadline:
            ids = [uuid.uuid4() for _ in range(batch)]
            await conn.execute(
                "INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, created_at,"
                " expires_at) SELECT m.id, $1, $2, m.d, m.s, $5, now(), now() + interval '30 days'"
                " FROM unnest($3::uuid[], $4::uuid[], $3::uuid[]) AS m(id, d, s)",
                sender[0], sender[1], ids, [targets[i % len(targets)] for i in range(batch)], content)
            await conn.execute("DELETE FROM messages WHERE id = ANY($1::uuid[])", ids)
            done += batch
    finally:
        await conn.close()
    return done


async def pg_ceiling(server_dsn: str, seconds: float, *, conns: int = 4, batch: int = 1000) -> dict:
    """Batched insert (unnest) + delete (= ANY) of ~256 B rows, durable commit, 4 connections."""
    url = await create_scratch(server_dsn)
    try:
        conn = await asyncpg.connect(url)
        try:
            pairs = await seed_devices(conn, 11)
        finally:
            await conn.close()
        targets = [d for _, d in pairs[1:]]
        start = time.monotonic()
        done = await asyncio.gather(*(_ceiling_worker(url, pairs[0], targets, start + seconds, batch)
                                      for _ in range(conns)))
        return {"msgs_per_s": sum(done) / (time.monotonic() - start), "batch": batch, "connections": conns}
    finally:
        await drop_scratch(server_dsn, url)


class PgServer:
    """A PostgreSQL server we may CREATE DATABASE on: the configured one when it answers, else an
    embedded one (durable, like production) in a temporary folder, stopped on exit."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._embedded = None
        self._dir: str | None = None

    async def __aenter__(self) -> str:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=5)
            await conn.close()
            return self.dsn
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
            from obscura.store.embedded import EmbeddedPostgres
            self._dir = tempfile.mkdtemp(prefix="obscura-bench-pg-")
            self._embedded = EmbeddedPostgres(self._dir)
            await self._embedded.start()
            self.dsn = self._embedded.admin_dsn
            return self.dsn

    async def __aexit__(self, *exc) -> None:
        if self._embedded is not None:
            await self._embedded.stop()
            shutil.rmtree(self._dir, ignore_errors=True)
