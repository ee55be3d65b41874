"""Relay throughput with telemetry exported vs disabled (issue 7: "within 10 %").

    .venv/bin/python -m bench.telemetry_relay                 # pg mode, 3 rounds, ~3 minutes
    .venv/bin/python -m bench.telemetry_relay --mode embedded --rounds 5 --seconds 6

Runs the driver's relay scenario (bench/relay.py: REST senders, online recipients that ACK, durable
commit) against a fresh node per variant, interleaved round by round so the machine's drift hits
every variant alike, and compares the medians:

- ``disabled``: nothing configured (the default);
- ``otlp 1.0``: OTLP/HTTP export of traces, metrics and logs to a local sink (bench/otlp_sink.py),
  every request sampled (the default ratio): request span, service span, statement spans;
- ``otlp 0.1``: the same with OBSCURA_TELEMETRY_TRACE_SAMPLING_RATIO=0.1.

Traffic goes to 127.0.0.1 only; every phase is bounded. Writes bench/results/telemetry.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench.harness import ROOT, free_port
from bench.pgutil import server_dsn
from bench.relay import Scenario, run_scenario

MAX_LOSS = 0.10  # issue 7: enabled within 10 % of disabled


def _variants(sink_port: int) -> dict[str, dict[str, str]]:
    otlp = {"OBSCURA_TELEMETRY_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OBSCURA_TELEMETRY_OTLP_PROTOCOL": "http/protobuf"}
    return {"disabled": {},
            "otlp 1.0": {**otlp, "OBSCURA_TELEMETRY_TRACE_SAMPLING_RATIO": "1.0"},
            "otlp 0.1": {**otlp, "OBSCURA_TELEMETRY_TRACE_SAMPLING_RATIO": "0.1"}}


def _start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.otlp_sink", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("OTLP sink did not start")
    return proc, port


def run(args: argparse.Namespace) -> dict:
    sink, port = _start_sink()
    samples: dict[str, list[dict]] = {name: [] for name in _variants(port)}
    try:
        names = list(samples)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]  # rotate the order
            for name in order:
                sc = Scenario(args.mode, 1, pg_url=args.pg_url, seconds=args.seconds, latency_seconds=1.0,
                              idle=0, recipients=args.recipients, senders=args.senders, warmup_s=2.0,
                              env=_variants(port)[name], label=name)
                r = run_scenario(sc)
                print(f"round {round_no + 1} {name}: {r['relay_msgs_per_s']:.0f} msgs/s, "
                      f"{r['server_cpu_us_per_msg']:.0f} us CPU/msg", flush=True)
                samples[name].append(r)
    finally:
        sink.kill()
        sink.wait(10)
    out = {}
    base = statistics.median(r["relay_msgs_per_s"] for r in samples["disabled"])
    base_cpu = statistics.median(r["server_cpu_us_per_msg"] for r in samples["disabled"])
    for name, runs in samples.items():
        tput = statistics.median(r["relay_msgs_per_s"] for r in runs)
        cpu = statistics.median(r["server_cpu_us_per_msg"] for r in runs)
        out[name] = {"relay_msgs_per_s": tput, "server_cpu_us_per_msg": cpu,
                     "throughput_ratio": tput / base, "cpu_ratio": cpu / base_cpu,
                     "within_10_percent": tput / base >= 1 - MAX_LOSS,
                     "runs": [r["relay_msgs_per_s"] for r in runs]}
    return {"mode": args.mode, "rounds": args.rounds, "seconds": args.seconds, "variants": out,
            "started": time.time()}


def markdown(result: dict) -> str:
    lines = [f"Relay with telemetry, {result['mode']} mode, median of {result['rounds']} interleaved rounds:", "",
             "| variant | relay msgs/s (runs) | vs disabled | CPU us/msg | vs disabled | within 10 % |",
             "|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        runs = ", ".join(f"{x:.0f}" for x in v["runs"])
        lines.append(f"| {name} | {v['relay_msgs_per_s']:.0f} ({runs}) | {v['throughput_ratio']:.3f} "
                     f"| {v['server_cpu_us_per_msg']:.0f} | {v['cpu_ratio']:.3f} "
                     f"| {'yes' if v['within_10_percent'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.telemetry_relay", description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="pg", choices=("embedded", "pg", "pg+redis"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="throughput window per run")
    p.add_argument("--recipients", type=int, default=64)
    p.add_argument("--senders", type=int, default=16)
    p.add_argument("--pg-url", default=server_dsn())
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "telemetry"))
    args = p.parse_args(argv)
    result = run(args)
    table = markdown(result)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
