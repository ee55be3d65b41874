"""Front-door cost: server CPU per HTTP request when the handler does nothing.

A real ``python -m obscura serve`` node; client processes keep ``--conns`` keep-alive connections
busy with ``GET /livez`` on its management listener (the same HttpServer code as the public port:
parsing, queueing, deadlines, response writing, access log; no database, no hooks). Prints the
server CPU per request next to the same-run picows echo cost, so changes to the HTTP machinery
can be compared without the noise of the database and the recipients (the relay driver's
per-message figure moves 10-30 % between runs on this box; this one moves a few per cent).

    .venv/bin/python -m bench.frontdoor --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from bench import loadgen
from bench.harness import CTX, Server, echo_baseline
from bench.procstat import cpu_s

__all__ = ["measure"]

_REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: obscura-bench\r\nAccept: */*\r\n\r\n"


def _client_main(port: int, conns: int, phase, counter) -> None:
    loadgen._run(_clients(port, conns, phase, counter))


async def _clients(port: int, conns: int, phase, counter) -> None:
    async def one() -> None:
        client = await loadgen._http(port)
        while phase.value < loadgen.STOP:
            status, _ = await client.request(_REQUEST)
            if status != 200:
                raise RuntimeError(f"GET /livez answered {status}")
            counter.value += 1
        client.transport.close()

    await asyncio.gather(*(one() for _ in range(conns)))


def measure(server: Server, seconds: float, *, procs: int = 2, conns: int = 16) -> dict:
    """One round against a running node: requests per second and server CPU us per request."""
    phase, counters = CTX.Value("i", 0), [CTX.RawValue("q", 0) for _ in range(procs)]
    clients = [CTX.Process(target=_client_main, args=(server.mgmt_port, conns, phase, c)) for c in counters]
    try:
        for c in clients:
            c.start()
        time.sleep(1.5)  # connect and warm up
        pid = server.proc.pid  # type: ignore[union-attr]
        n0, c0, t0 = sum(c.value for c in counters), cpu_s(pid), time.monotonic()
        time.sleep(seconds)
        n1, c1, t1 = sum(c.value for c in counters), cpu_s(pid), time.monotonic()
    finally:
        phase.value = loadgen.STOP
        for c in clients:
            c.join(10)
            if c.is_alive():
                c.terminate()
    requests = max(n1 - n0, 1)
    return {"requests_per_s": requests / (t1 - t0), "server_cpu_us_per_request": (c1 - c0) / requests * 1e6}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--conns", type=int, default=16, help="keep-alive connections per client process")
    p.add_argument("--echo-seconds", type=float, default=2.0, help="picows echo baseline window (0: skip)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    echo = echo_baseline(args.echo_seconds) if args.echo_seconds > 0 else None
    server = Server({}).start()  # embedded mode: /livez never touches the database
    try:
        rounds = [measure(server, args.seconds, conns=args.conns) for _ in range(args.rounds)]
    finally:
        server.stop()
    us = statistics.median(r["server_cpu_us_per_request"] for r in rounds)
    result = {"rounds": rounds, "median_cpu_us_per_request": us,
              "echo_cpu_us": echo["server_cpu_us_per_echo"] if echo else None}
    if args.json:
        print(json.dumps(result))
        return 0
    for i, r in enumerate(rounds, 1):
        print(f"round {i}: {r['requests_per_s']:,.0f} req/s, {r['server_cpu_us_per_request']:.1f} us CPU/request")
    ratio = f" = {us / echo['server_cpu_us_per_echo']:.1f}x the picows echo ({echo['server_cpu_us_per_echo']:.1f} us)" if echo else ""
    print(f"median: {us:.1f} us CPU/request{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
