"""Register the users the k6 scripts use: ``python -m bench.k6.prepare --base-url URL --users N --out users.json``.

Each user gets one device (real Signal keys, so any deployment accepts them). The output is a JSON
list of {"token", "deviceId"}. Mind the target's auth rate limit (OBSCURA_RATE_LIMIT_AUTH_*): against
a default deployment registration runs at about one user per second per client IP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.parse

from bench.harness import make_users


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench.k6.prepare")
    p.add_argument("--base-url", default="http://127.0.0.1:3000")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", default="users.json")
    args = p.parse_args(argv)
    port = urllib.parse.urlsplit(args.base_url).port or 80
    users = asyncio.run(make_users(port, args.users, args.concurrency, host=urllib.parse.urlsplit(args.base_url).hostname))
    with open(args.out, "w") as f:
        json.dump([{"token": t, "deviceId": d} for t, d in users], f)
    print(f"wrote {len(users)} users to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
