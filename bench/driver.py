"""End-to-end load driver: baselines, relay scenarios and the performance.md goal ratios in one run.

    .venv/bin/python -m bench.driver                      # embedded 1 node, pg+redis 1 and 2 nodes
    .venv/bin/python -m bench.driver --scenarios embedded:1 --seconds 5 --idle 1000

Traffic goes to 127.0.0.1 only; every phase is bounded in time and count. Writes JSON and Markdown
(default bench/results/latest.{json,md}) and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time

from bench.harness import ROOT, echo_baseline, pg_ceiling
from bench.pgutil import server_dsn
from bench.relay import Scenario, run_scenario

__all__ = ["GOALS", "evaluate", "main"]

# performance.md goals 1-4 (ratios to same-run baselines).
GOALS = {"relay_ratio_min": 0.35, "cpu_ratio_max": 4.0, "p99_ms_max": 5.0, "p50_ms_max": 1.0,
         "rss_per_conn_max": 16 * 1024}


def evaluate(result: dict, echo: dict, ceiling: dict) -> dict:
    """Goal ratios of one scenario against the same-run baselines."""
    relay_ratio = result["relay_msgs_per_s"] / ceiling["msgs_per_s"]
    cpu_ratio = result["server_cpu_us_per_msg"] / echo["server_cpu_us_per_echo"]
    # Goal 3 is defined inside the server (send request received -> Envelope written): its own
    # histogram when one process took every send and delivery; the recipients' clock otherwise
    # (across nodes or workers the server figure covers only deliveries within one process).
    server_side = result.get("nodes", 1) == 1 and result.get("workers", 1) == 1 \
        and result.get("server_latency_p99_ms") is not None
    key = "server_latency" if server_side else "latency"
    p50, p99 = result.get(f"{key}_p50_ms"), result.get(f"{key}_p99_ms")
    rss = result.get("rss_bytes_per_idle_connection")
    return {
        "goal1_relay_ratio": relay_ratio, "goal1_met": relay_ratio >= GOALS["relay_ratio_min"],
        "goal2_cpu_ratio": cpu_ratio, "goal2_met": cpu_ratio <= GOALS["cpu_ratio_max"],
        "goal3_met": p99 is not None and p99 <= GOALS["p99_ms_max"] and p50 <= GOALS["p50_ms_max"],
        "goal3_measured": "server" if server_side else "client",
        "goal4_met": rss is not None and rss <= GOALS["rss_per_conn_max"],
    }


def _fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(run: dict) -> str:
    e, c = run["echo"], run["pg_ceiling"]
    lines = [f"Baselines: picows echo {e['echo_per_s']:.0f}/s at {e['server_cpu_us_per_echo']:.1f} us server CPU "
             f"per echo; batched PostgreSQL insert+delete ceiling {c['msgs_per_s']:.0f} msgs/s.", "",
             "| scenario | relay msgs/s | goal 1 ratio (>= 0.35) | CPU us/msg | goal 2 ratio (<= 4) "
             "| p50 / p99 ms at half load: server (client) | RSS/idle conn | connects/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in run["scenarios"]:
        g = r["goals"]
        ok = lambda met: "met" if met else "missed"  # noqa: E731
        rss = r.get("rss_bytes_per_idle_connection")
        rss_cell = "- (not measured)" if rss is None else f"{rss / 1024:.1f} KiB {ok(g['goal4_met'])}"
        lines.append(
            f"| {r['scenario']} | {r['relay_msgs_per_s']:.0f} | {g['goal1_relay_ratio']:.3f} {ok(g['goal1_met'])} "
            f"| {r['server_cpu_us_per_msg']:.0f} | {g['goal2_cpu_ratio']:.1f} {ok(g['goal2_met'])} "
            f"| {_fmt(r.get('server_latency_p50_ms'), '.2f')} / {_fmt(r.get('server_latency_p99_ms'), '.2f')} "
            f"({_fmt(r.get('latency_p50_ms'), '.2f')} / {_fmt(r.get('latency_p99_ms'), '.2f')}) {ok(g['goal3_met'])} "
            f"| {rss_cell} "
            f"| {_fmt(r.get('gateway_connects_per_s'))} |")
    return "\n".join(lines) + "\n"


def _parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.driver", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default="embedded:1,pg+redis:1,pg+redis:2",
                   help="comma list of MODE:NODES[:WORKERS], MODE = embedded or pg+redis")
    p.add_argument("--seconds", type=float, default=6.0, help="throughput window per scenario")
    p.add_argument("--latency-seconds", type=float, default=5.0, help="half-load latency window")
    p.add_argument("--latency-rate", type=float, default=None,
                   help="open-loop msgs/s of the latency window (default: half the measured throughput); "
                        "a fixed rate compares two builds at the same load")
    p.add_argument("--baseline-seconds", type=float, default=5.0, help="echo and PostgreSQL ceiling windows")
    p.add_argument("--idle", type=int, default=2000, help="idle authenticated connections to open (0: skip)")
    p.add_argument("--recipients", type=int, default=64, help="online recipient devices")
    p.add_argument("--senders", type=int, default=16, help="sending devices")
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--pg-url", default=server_dsn(), help="PostgreSQL server for the ceiling and pg+redis mode")
    p.add_argument("--redis-url", default=os.environ.get("OBSCURA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    p.add_argument("--md", default=os.path.join(ROOT, "bench", "results", "latest.md"))
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    started = time.time()
    echo = echo_baseline(args.baseline_seconds)
    print(f"echo: {echo}", flush=True)
    ceiling = asyncio.run(pg_ceiling(args.pg_url, args.baseline_seconds))
    print(f"pg ceiling: {ceiling}", flush=True)
    results = []
    for spec in args.scenarios.split(","):
        mode, nodes, *rest = spec.split(":")
        sc = Scenario(mode, int(nodes), workers=int(rest[0]) if rest else 1, pg_url=args.pg_url,
                      redis_url=args.redis_url, seconds=args.seconds, latency_seconds=args.latency_seconds,
                      latency_rate=args.latency_rate,
                      idle=args.idle, recipients=args.recipients, senders=args.senders,
                      warmup_s=args.warmup_seconds)
        r = run_scenario(sc)
        r["goals"] = evaluate(r, echo, ceiling)
        print(f"{sc.name}: {r}", flush=True)
        results.append(r)
    return {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                        "extensions": os.environ.get("OBSCURA_NO_EXTENSIONS") != "1"},
            "started": started, "duration_s": time.time() - started, "echo": echo, "pg_ceiling": ceiling,
            "scenarios": results, "goals": GOALS}


def main(argv=None) -> int:
    args = _parse(argv)
    result = run(args)
    table = markdown(result)
    for path, text in ((args.json, json.dumps(result, indent=2)), (args.md, table)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
