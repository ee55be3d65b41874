"""CI performance-regression gate (performance.md goal 6): `make bench-gate`, at most ~3 minutes.

1. Same-run baselines (picows echo, batched PostgreSQL) and a short relay run on one node with an
   external PostgreSQL (the baselines' server) and in-process coordination; fails when the goal 1
   ratio (relay / ceiling) falls more than 15 % below bench/baseline.json, or the goal 2 efficiency
   (echo CPU / relay CPU per message) falls more than 15 % below it.
   A failing measurement is repeated once; the gate fails only when the better of the two still does.
2. A short k6 check: CONNS WebSocket sessions opened through tickets, held, fed messages, ACKed and
   closed, with thresholds on connect time, delivery latency and errors (bench/k6/deliver.js).

    .venv/bin/python -m bench.gate                 # both checks; exit 1 on a regression
    .venv/bin/python -m bench.gate --update "why"  # write the measured ratios as the new baseline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench.driver import evaluate
from bench.harness import ROOT, PgServer, Server, echo_baseline, make_users, pg_ceiling
from bench.pgutil import server_dsn
from bench.relay import Scenario, run_scenario

BASELINE = os.path.join(ROOT, "bench", "baseline.json")
TOLERANCE = 0.15


def measure(seconds: float) -> dict:
    pg = PgServer(server_dsn())
    dsn = asyncio.run(pg.__aenter__())
    try:
        echo = echo_baseline(seconds)
        ceiling = asyncio.run(pg_ceiling(dsn, seconds))
        relay = run_scenario(Scenario("pg", 1, pg_url=dsn, seconds=seconds + 2, latency_seconds=3, idle=0))
    finally:
        asyncio.run(pg.__aexit__(None, None, None))
    goals = evaluate(relay, echo, ceiling)
    return {"echo": echo, "pg_ceiling": ceiling, "relay": relay,
            "goal1_relay_ratio": goals["goal1_relay_ratio"], "goal2_cpu_ratio": goals["goal2_cpu_ratio"]}


def best(first: dict, second: dict) -> dict:
    """The better figure of two measurements for each goal (goal 1 higher, goal 2 lower)."""
    return {**second, "goal1_relay_ratio": max(first["goal1_relay_ratio"], second["goal1_relay_ratio"]),
            "goal2_cpu_ratio": min(first["goal2_cpu_ratio"], second["goal2_cpu_ratio"])}


def compare(measured: dict, baseline: dict) -> list[str]:
    """Failures: goal 1 is better when higher, goal 2 (CPU ratio) better when lower."""
    failures = []
    floor = baseline["goal1_relay_ratio"] * (1 - TOLERANCE)
    if measured["goal1_relay_ratio"] < floor:
        failures.append(f"goal 1 relay ratio {measured['goal1_relay_ratio']:.3f} < {floor:.3f} "
                        f"(baseline {baseline['goal1_relay_ratio']:.3f} - 15 %)")
    ceiling = baseline["goal2_cpu_ratio"] / (1 - TOLERANCE)
    if measured["goal2_cpu_ratio"] > ceiling:
        failures.append(f"goal 2 CPU ratio {measured['goal2_cpu_ratio']:.2f} > {ceiling:.2f} "
                        f"(baseline {baseline['goal2_cpu_ratio']:.2f}: efficiency down more than 15 %)")
    return failures


# Delivery p99 limit of the k6 check. The median (< 50 ms; 4-6 ms measured) catches a systematic
# regression; the p99 of a 30 s window moves with a single stall: one CI run had p99 764 ms (max
# 930 ms, the sends' own HTTP time up to 918 ms, p50 still 5 ms; no PostgreSQL checkpoint in that
# window) while the six k6 runs right after, three on the previous code and three on this one,
# stayed at 105-165 ms max. A ~1 s stall of this shared VM should not fail CI by itself.
K6_P99_MS = 1000


def k6_check(conns: int, users: int, rate: int) -> int:
    """Run bench/k6/deliver.js against a fresh embedded node; returns k6's exit status."""
    k6 = shutil.which("k6") or os.path.join(os.path.dirname(sys.executable), "k6")
    server = Server({}).start()
    folder = tempfile.mkdtemp(prefix="obscura-k6-")
    try:
        made = asyncio.run(make_users(server.port, users))
        path = os.path.join(folder, "users.json")
        with open(path, "w") as f:
            json.dump([{"token": t, "deviceId": d} for t, d in made], f)
        cmd = [k6, "run", "--quiet", "--no-usage-report", "-e", f"BASE_URL=http://127.0.0.1:{server.port}",
               "-e", f"USERS={path}", "-e", f"CONNS={conns}", "-e", f"RATE={rate}", "-e", "RAMP_S=10",
               "-e", "SEND_S=15", "-e", f"P99_MS={K6_P99_MS}", "-e", "P50_MS=50", os.path.join(ROOT, "bench", "k6", "deliver.js")]
        return subprocess.run(cmd, timeout=180).returncode
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _report(measured: dict) -> None:
    print(f"goal 1 relay ratio {measured['goal1_relay_ratio']:.3f} "
          f"({measured['relay']['relay_msgs_per_s']:.0f} / {measured['pg_ceiling']['msgs_per_s']:.0f} msgs/s); "
          f"goal 2 CPU ratio {measured['goal2_cpu_ratio']:.2f} ({measured['relay']['server_cpu_us_per_msg']:.0f} / "
          f"{measured['echo']['server_cpu_us_per_echo']:.1f} us)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.gate", description="performance regression gate")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--update", metavar="NOTE", help="write the measured ratios to bench/baseline.json")
    p.add_argument("--skip-k6", action="store_true")
    p.add_argument("--k6-conns", type=int, default=1000)
    p.add_argument("--k6-users", type=int, default=100)
    p.add_argument("--k6-rate", type=int, default=50, help="sends per second (each reaches CONNS/USERS sessions)")
    args = p.parse_args(argv)
    started = time.monotonic()
    measured = measure(args.seconds)
    _report(measured)
    if args.update:
        with open(BASELINE, "w") as f:
            json.dump({"goal1_relay_ratio": round(measured["goal1_relay_ratio"], 4),
                       "goal2_cpu_ratio": round(measured["goal2_cpu_ratio"], 3), "note": args.update,
                       "updated": time.strftime("%Y-%m-%d"), "measured": measured}, f, indent=2)
        print(f"baseline written to {BASELINE}")
        return 0
    with open(BASELINE) as f:
        baseline = json.load(f)
    failures = compare(measured, baseline)
    if failures:
        # On a shared VM one measurement can land in a slow half-minute (the same code's ratios
        # moved 17-31 between driver runs on a busy day): a regression must show twice.
        print("re-measuring to confirm: " + "; ".join(failures), flush=True)
        again = measure(args.seconds)
        _report(again)
        failures = compare(best(measured, again), baseline)
    for failure in failures:
        print(f"REGRESSION: {failure}")
    status = 1 if failures else 0
    if not args.skip_k6:
        k6_status = k6_check(args.k6_conns, args.k6_users, args.k6_rate)
        print(f"k6 check exit status {k6_status}")
        status = status or (1 if k6_status else 0)
    print(f"gate {'passed' if status == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
