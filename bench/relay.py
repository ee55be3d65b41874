"""One relay scenario of the driver: idle density, relay throughput and CPU, latency at half load."""

from __future__ import annotations

import asyncio
import time
import uuid

from bench import loadgen
from bench.harness import CTX, Server, make_users, tickets
from bench.pgutil import create_scratch, drop_scratch

__all__ = ["Scenario", "run_scenario"]


class Scenario:
    def __init__(self, mode: str, nodes: int, *, workers: int = 1, pg_url: str | None = None,
                 redis_url: str | None = None, seconds: float = 6.0, latency_seconds: float = 5.0,
                 idle: int = 2000, recipients: int = 64, senders: int = 16, sender_procs: int = 2,
                 conns_per_sender_proc: int = 16, message_bytes: int = 200, warmup_s: float = 2.0,
                 env: dict[str, str] | None = None, label: str = "", latency_rate: float | None = None) -> None:
        self.mode, self.nodes, self.workers = mode, nodes, workers
        self.pg_url, self.redis_url = pg_url, redis_url
        self.seconds, self.latency_seconds, self.idle = seconds, latency_seconds, idle
        self.latency_rate = latency_rate
        self.recipients, self.senders = recipients, senders
        self.sender_procs, self.conns_per_sender_proc = sender_procs, conns_per_sender_proc
        self.message_bytes = message_bytes
        self.warmup_s = warmup_s
        self.env = dict(env or {})  # extra server environment (bench/telemetry_relay.py: OTLP export)
        self.label = label

    @property
    def name(self) -> str:
        w = f" x{self.workers} workers" if self.workers > 1 else ""
        label = f" ({self.label})" if self.label else ""
        return f"{self.mode}, {self.nodes} node{'s' if self.nodes > 1 else ''}{w}{label}"


def _start_servers(sc: Scenario, db_url: str | None) -> list[Server]:
    """embedded: the node's own PostgreSQL; pg: external PostgreSQL, in-process coordination;
    pg+redis: external PostgreSQL and Redis (the cluster mode; required for several nodes)."""
    env: dict[str, str] = dict(sc.env)
    if db_url is not None:
        env["OBSCURA_DATABASE_URL"] = db_url
    if sc.mode == "pg+redis":
        prefix = f"bench{uuid.uuid4().hex[:8]}:"
        env.update({"OBSCURA_PUBSUB_URL": sc.redis_url, "OBSCURA_NOTIFICATIONS_CHANNEL_PREFIX": prefix,
                    "OBSCURA_NOTIFICATIONS_PUSH_QUEUE_KEY": prefix + "jobs"})
    servers = []
    try:
        for _ in range(sc.nodes):
            servers.append(Server(env, workers=sc.workers).start())
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def _idle_phase(sc: Scenario, servers: list[Server], tokens: list[str]) -> dict:
    """Open ``idle`` authenticated sessions on the first node; RSS delta per connection, connects/s."""
    if sc.idle <= 0:
        return {}
    node = servers[0]
    time.sleep(0.5)
    rss0 = node.rss_bytes()
    phase, out, procs = CTX.Value("i", 0), CTX.Queue(), []
    # One client process holds at most ~15k sockets (the 20,000 open-files limit per process).
    nprocs = max(2, -(-sc.idle // 15000))
    opened = [CTX.RawValue("q", 0) for _ in range(nprocs)]
    for i in range(nprocs):
        cfg = {"tokens": tokens, "port": node.port, "count": sc.idle // nprocs, "concurrency": 50,
               "source_ip": f"127.0.0.{i + 1}"}  # traffic still goes to 127.0.0.1
        procs.append(CTX.Process(target=loadgen.idle_main, args=(cfg, phase, opened[i], out)))
    for p in procs:
        p.start()
    reports = [out.get(timeout=max(120.0, sc.idle / 100)) for _ in procs]
    time.sleep(1.0)
    rss1 = node.rss_bytes()
    phase.value = loadgen.STOP
    for p in procs:
        p.join(30)
    count = sum(r["opened"] for r in reports)
    elapsed = max(r["elapsed_s"] for r in reports)
    return {"idle_connections": count, "idle_failures": sum(r["failures"] for r in reports),
            "rss_bytes_per_idle_connection": (rss1 - rss0) / max(count, 1),
            "gateway_connects_per_s": count / elapsed if elapsed else 0.0}


def _relay_phases(sc: Scenario, servers: list[Server], recips: list[tuple[str, str]],
                  senders: list[tuple[str, str]]) -> dict:
    phase, rate, out = CTX.Value("i", 0), CTX.Value("d", 0.0), CTX.Queue()
    urls = asyncio.run(_ticket_urls(servers, recips))
    half = (len(urls) + 1) // 2
    delivered = [CTX.RawValue("q", 0) for _ in range(2)]
    ready = [CTX.RawValue("i", 0) for _ in range(2)]
    procs = [CTX.Process(target=loadgen.recipient_main, args=({"urls": chunk}, phase, delivered[i], ready[i], out))
             for i, chunk in enumerate((urls[:half], urls[half:]))]
    for p in procs:
        p.start()
    while not all(r.value for r in ready):
        time.sleep(0.05)
    targets = [device for _, device in recips]
    total_conns = sc.sender_procs * sc.conns_per_sender_proc
    sent = [CTX.RawValue("q", 0) for _ in range(sc.sender_procs)]
    for i in range(sc.sender_procs):
        conns = [(senders[(i * sc.conns_per_sender_proc + k) % len(senders)][0],
                  servers[(i * sc.conns_per_sender_proc + k) % len(servers)].port)
                 for k in range(sc.conns_per_sender_proc)]
        cfg = {"targets": targets, "message_bytes": sc.message_bytes, "senders": conns, "total_conns": total_conns}
        procs.append(CTX.Process(target=loadgen.sender_main, args=(cfg, phase, rate, sent[i], out)))
    for p in procs[2:]:
        p.start()

    def snap():
        return (sum(d.value for d in delivered), sum(s.cpu_s() for s in servers), time.monotonic(),
                sum(x.value for x in sent))

    time.sleep(sc.warmup_s)  # warm-up: connections, prepared statements, caches
    phase.value = 1
    n0, c0, t0, s0 = snap()
    time.sleep(sc.seconds)
    n1, c1, t1, s1 = snap()
    relayed = max(n1 - n0, 1)
    throughput = relayed / (t1 - t0)
    rate.value = sc.latency_rate or throughput / 2
    phase.value = 2  # open loop at half the measured rate (or the one asked for)
    time.sleep(0.5)
    h0 = _delivery_histogram(servers)  # before the window: the scrape's own CPU stays out of it
    l0 = snap()
    time.sleep(sc.latency_seconds)
    l1 = snap()
    h1 = _delivery_histogram(servers)
    phase.value = loadgen.STOP
    reports = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    lat = sorted(x for r in reports if r["kind"] == "recipient" for x in r["latencies_ns"])
    errors = sum(r.get("errors", 0) for r in reports)
    return {"relay_msgs_per_s": throughput, "accepted_msgs_per_s": (s1 - s0) / (t1 - t0), "server_cpu_us_per_msg": (c1 - c0) / relayed * 1e6,
            "half_load_msgs_per_s": (l1[0] - l0[0]) / (l1[2] - l0[2]),
            # CPU per message at a fixed rate (--latency-rate): steadier than the closed loop's
            # when comparing two builds, which also differ in how much they batch at saturation.
            "half_load_cpu_us_per_msg": (l1[1] - l0[1]) / max(l1[0] - l0[0], 1) * 1e6,
            "latency_p50_ms": _pct(lat, 0.50), "latency_p99_ms": _pct(lat, 0.99),
            "latency_samples": len(lat), **_server_latency(h0, h1), "send_errors": errors,
            "duplicates": sum(r.get("duplicates", 0) for r in reports)}


_DELIVERY = "obscura_message_delivery_latency_seconds"


def _delivery_histogram(servers: list[Server]) -> dict[float, float]:
    """The nodes' delivery latency buckets summed (a scrape of a --workers node covers all of its
    workers: the supervisor merges them)."""
    total: dict[float, float] = {}
    for server in servers:
        for bound, count in server.histogram(_DELIVERY).items():
            total[bound] = total.get(bound, 0.0) + count
    return total


def _server_latency(before: dict[float, float] | None, after: dict[float, float] | None) -> dict:
    """p50/p99 of send request received -> Envelope written, measured by the server itself
    (performance.md goal 3's definition; direct deliveries on the node that took the send),
    interpolated within the histogram buckets as Prometheus' histogram_quantile does."""
    if before is None or after is None:
        return {}
    bounds = sorted(after)
    cumulative = [after[b] - before.get(b, 0.0) for b in bounds]
    total = cumulative[-1] if cumulative else 0.0
    out: dict = {"server_latency_samples": int(total)}
    for name, q in (("server_latency_p50_ms", 0.50), ("server_latency_p99_ms", 0.99)):
        out[name] = _bucket_quantile(bounds, cumulative, q) if total else None
    return out


def _bucket_quantile(bounds: list[float], cumulative: list[float], q: float) -> float:
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, cumulative):
        if count >= rank:
            if bound == float("inf"):
                return lower * 1000  # beyond the last finite bound: report that bound
            share = (rank - below) / (count - below) if count > below else 1.0
            return (lower + (bound - lower) * share) * 1000
        lower, below = bound, count
    return lower * 1000


def _pct(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    return sorted_ns[min(int(q * len(sorted_ns)), len(sorted_ns) - 1)] / 1e6


async def _ticket_urls(servers: list[Server], recips: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for i, server in enumerate(servers):  # recipients spread over the nodes, like senders
        out += await tickets(server.port, [t for t, _ in recips[i::len(servers)]])
    return out


def run_scenario(sc: Scenario) -> dict:
    if sc.mode not in ("embedded", "pg", "pg+redis"):
        raise ValueError(f"unknown mode {sc.mode!r}")
    if sc.nodes > 1 and sc.mode != "pg+redis" or sc.workers > 1 and sc.mode != "pg+redis":
        raise ValueError("several nodes or workers need pg+redis mode")
    db_url = None if sc.mode == "embedded" else asyncio.run(create_scratch(sc.pg_url, migrate=False))
    try:
        return _run(sc, db_url)
    finally:
        if db_url is not None:
            asyncio.run(drop_scratch(sc.pg_url, db_url))


def _run(sc: Scenario, db_url: str | None) -> dict:
    servers = _start_servers(sc, db_url)
    try:
        users = asyncio.run(make_users(servers[0].port, sc.recipients + sc.senders))
        recips, senders = users[:sc.recipients], users[sc.recipients:]
        result = {"scenario": sc.name, "mode": sc.mode, "nodes": sc.nodes, "workers": sc.workers}
        result.update(_idle_phase(sc, servers, [t for t, _ in recips]))
        result.update(_relay_phases(sc, servers, recips, senders))
        return result
    finally:
        for s in servers:
            s.stop()

