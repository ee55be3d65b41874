"""Loop stalls at density: how long the front door takes to answer while a node holds many idle
sessions, some reconnect and messages arrive (the driver closes its idle sessions before the relay
phases, so it cannot see this). A stall hits every request and frame in flight at that moment:
a heartbeat pass over every session, a garbage collection walking them (bench/RESULTS.md).

    .venv/bin/python -m bench.stall --connections 8000 --seconds 60
    .venv/bin/python -m bench.stall --mode pg+redis --connections 8000 --churn 50 --sends 200

One node; ``connections`` ticketed sessions held by client processes; a churn process keeps
``churn_pool`` more sessions and replaces ``churn`` of them per second, and sends ``sends``
requests per second (1-3 messages each) to devices that have no session (stored, not delivered);
a probe process sends ``GET /nope`` (404) every 2 ms on one keep-alive connection and records
each round trip. Prints one JSON line: probe percentiles and maximum, churn and send counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid

import picows

from bench import loadgen
from bench.harness import CTX, make_users
from bench.pgutil import create_scratch, drop_scratch, server_dsn
from bench.relay import Scenario, _pct, _start_servers

PROBE_INTERVAL_S = 0.002


def probe_main(port: int, seconds: float, out) -> None:
    loadgen._run(_probe(port, seconds, out))


async def _probe(port: int, seconds: float, out) -> None:
    client = await loadgen._http(port)
    request = b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    samples: list[int] = []  # round trips in ns
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter_ns()
        status, _ = await client.request(request)
        samples.append(time.perf_counter_ns() - started)
        if status != 404:
            raise RuntimeError(f"probe got {status}")
        await asyncio.sleep(PROBE_INTERVAL_S)
    client.transport.close()
    out.put({"kind": "probe", "samples": samples})


def churn_main(cfg: dict, out) -> None:
    loadgen._run(_churn(cfg, out))


async def _churn(cfg: dict, out) -> None:
    """Hold ``pool`` sessions, replace ``churn`` per second, send ``sends`` requests per second."""
    port, tokens, rng = cfg["port"], cfg["tokens"], random.Random(7)
    targets = [uuid.UUID(d).bytes for d in cfg["offline"]]
    openers = [await loadgen._http(port) for _ in range(4)]
    senders = [await loadgen._http(port) for _ in range(8)]
    held: list[picows.WSTransport] = []
    counts = {"opened": 0, "closed": 0, "messages": 0, "failures": 0}
    pad = b"\x00" * 200
    tasks: set[asyncio.Task] = set()

    async def open_one() -> None:
        if not openers:
            counts["failures"] += 1  # the node is slower than the churn asked for
            return
        client = openers.pop()
        try:
            status, body = await client.request(loadgen.ticket_request(rng.choice(tokens)))
        finally:
            openers.append(client)
        if status != 201:
            counts["failures"] += 1
            return
        ticket = loadgen.ticket_of(body)
        try:
            transport, _ = await picows.ws_connect(picows.WSListener, f"ws://127.0.0.1:{port}/v1/gateway?ticket={ticket}")
        except Exception:  # noqa: BLE001 - counted, the run goes on
            counts["failures"] += 1
            return
        held.append(transport)
        counts["opened"] += 1

    async def send_one() -> None:
        client = senders.pop()
        try:
            body, n = loadgen._submit_body(targets, rng, pad)
            status, _ = await client.request(loadgen.send_request(rng.choice(tokens), body))
        finally:
            senders.append(client)
        if status == 200:
            counts["messages"] += n
        else:
            counts["failures"] += 1

    def spawn(coro) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for _ in range(cfg["pool"]):
        await open_one()
    step, due = 0.01, time.monotonic()
    owed_churn = owed_sends = 0.0
    deadline = due + cfg["seconds"]
    while due < deadline:
        due += step
        owed_churn += cfg["churn"] * step
        owed_sends += cfg["sends"] * step
        while owed_churn >= 1:
            owed_churn -= 1
            if held:
                held.pop(rng.randrange(len(held))).disconnect()
                counts["closed"] += 1
            spawn(open_one())
        while owed_sends >= 1:
            owed_sends -= 1
            if senders:
                spawn(send_one())
            else:
                counts["failures"] += 1
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await asyncio.gather(*tasks, return_exceptions=True)
    for transport in held:
        transport.disconnect()
    out.put({"kind": "churn", **counts})


def run(args: argparse.Namespace) -> dict:
    sc = Scenario(args.mode, 1, pg_url=args.pg_url, redis_url=args.redis_url, idle=args.connections)
    db = None if args.mode == "embedded" else asyncio.run(create_scratch(args.pg_url, migrate=False))
    try:
        (server,) = _start_servers(sc, db)
        try:
            users = asyncio.run(make_users(server.port, args.users + args.offline_users))
            online, offline = users[:args.users], users[args.users:]
            tokens = [token for token, _ in online]
            phase, out = CTX.Value("i", 0), CTX.Queue()
            nprocs = max(1, -(-args.connections // 15000))  # <= 15k sockets per client process
            holders = []
            for i in range(nprocs):
                cfg = {"tokens": tokens, "port": server.port, "count": args.connections // nprocs,
                       "concurrency": 50, "source_ip": f"127.0.0.{i + 1}"}
                holders.append(CTX.Process(target=loadgen.idle_main, args=(cfg, phase, CTX.RawValue("q", 0), out)))
            for p in holders:
                p.start()
            held = [out.get(timeout=max(120.0, args.connections / 100)) for _ in holders]
            rss0 = server.rss_bytes()
            churn_cfg = {"port": server.port, "tokens": tokens, "offline": [d for _, d in offline],
                         "pool": args.churn_pool, "churn": args.churn, "sends": args.sends, "seconds": args.seconds}
            results = CTX.Queue()
            workers = [CTX.Process(target=probe_main, args=(server.port, args.seconds, results)),
                       CTX.Process(target=churn_main, args=(churn_cfg, results))]
            for p in workers:
                p.start()
            reports = {r["kind"]: r for r in (results.get(timeout=args.seconds + 120) for _ in workers)}
            for p in workers:
                p.join(30)
            rss1 = server.rss_bytes()
            phase.value = loadgen.STOP
            for p in holders:
                p.join(30)
        finally:
            server.stop()
    finally:
        if db is not None:
            asyncio.run(drop_scratch(args.pg_url, db))
    samples = sorted(reports["probe"]["samples"])
    churn = reports["churn"]
    return {"mode": args.mode, "sessions_held": sum(r["opened"] for r in held),
            "hold_failures": sum(r["failures"] for r in held), "seconds": args.seconds,
            "probes": len(samples), "probe_p50_ms": _pct(samples, 0.5),
            "probe_p99_ms": _pct(samples, 0.99), "probe_p999_ms": _pct(samples, 0.999),
            "probe_max_ms": _pct(samples, 1.0), "probes_over_50ms": sum(1 for s in samples if s > 50_000_000),
            "churn_opened": churn["opened"], "churn_closed": churn["closed"], "messages_sent": churn["messages"],
            "churn_failures": churn["failures"], "rss_growth_mib": (rss1 - rss0) / 2**20}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.stall", description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="pg", choices=("embedded", "pg", "pg+redis"))
    p.add_argument("--connections", type=int, default=8000, help="idle sessions held during the run")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--churn", type=float, default=20.0, help="session replacements per second")
    p.add_argument("--churn-pool", type=int, default=200, help="sessions the churn process keeps")
    p.add_argument("--sends", type=float, default=300.0, help="send requests per second (to offline devices)")
    p.add_argument("--users", type=int, default=40, help="devices the sessions are spread over")
    p.add_argument("--offline-users", type=int, default=20, help="devices that receive the sends")
    p.add_argument("--pg-url", default=server_dsn())
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
