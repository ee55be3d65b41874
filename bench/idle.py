"""Connection density (performance.md goal 4): RSS per idle authenticated connection, and how many
connections one node holds, with one process or several workers sharing the port.

    .venv/bin/python -m bench.idle --connections 4000                     # pg mode, one process
    .venv/bin/python -m bench.idle --mode pg+redis --workers 3 --connections 50000

Each connection is a real ticket + upgrade from client processes (<= 15k sockets each) to
127.0.0.1, held until all are open, then closed. Prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bench.harness import make_users
from bench.pgutil import create_scratch, drop_scratch, server_dsn
from bench.relay import Scenario, _idle_phase, _start_servers


def run(args: argparse.Namespace) -> dict:
    sc = Scenario(args.mode, 1, workers=args.workers, pg_url=args.pg_url, redis_url=args.redis_url,
                  idle=args.connections)
    db = None if args.mode == "embedded" else asyncio.run(create_scratch(args.pg_url, migrate=False))
    try:
        servers = _start_servers(sc, db)
        try:
            users = asyncio.run(make_users(servers[0].port, args.users))
            result = _idle_phase(sc, servers, [token for token, _ in users])
        finally:
            for s in servers:
                s.stop()
    finally:
        if db is not None:
            asyncio.run(drop_scratch(args.pg_url, db))
    result.update({"mode": args.mode, "workers": args.workers, "requested": args.connections,
                   "kib_per_idle_connection": result["rss_bytes_per_idle_connection"] / 1024})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.idle", description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="pg", choices=("embedded", "pg", "pg+redis"))
    p.add_argument("--workers", type=int, default=1, help="worker processes (more than 1 needs pg+redis)")
    p.add_argument("--connections", type=int, default=4000)
    p.add_argument("--users", type=int, default=40, help="devices the connections are spread over")
    p.add_argument("--pg-url", default=server_dsn())
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    result = run(p.parse_args(argv))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
