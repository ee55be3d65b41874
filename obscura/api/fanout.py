"""The management port of `serve --workers N`: the supervisor asks every worker and answers for the node.

Each worker serves /livez, /readyz and /metrics on a private Unix socket (obscura/supervisor.py);
a scrape or probe of the shared port therefore sees the whole node instead of whichever worker
the kernel picked (SO_REUSEPORT spreads connections, not requests for one process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import orjson

from obscura.api.metrics import CONTENT_TYPE, merge_prometheus
from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.health import ReadinessReport

__all__ = ["add_fanout_routes", "ask_worker", "WorkerError"]

log = logging.getLogger("obscura.supervisor")

_LIVEZ_TIMEOUT_S = 2.0  # a worker whose loop is blocked this long is not live
_METRICS_TIMEOUT_S = 5.0
_MAX_REPLY = 16 * 1024 * 1024  # a /metrics page is tens of KiB


class WorkerError(Exception):
    """The worker did not answer with a complete HTTP response in time."""


async def ask_worker(path: str, target: str, timeout_s: float) -> tuple[int, bytes]:
    """GET ``target`` from the worker listening on the Unix socket ``path``: (status, body)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(path, limit=_MAX_REPLY)
            try:
                writer.write(f"GET {target} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                if length > _MAX_REPLY:
                    raise WorkerError(f"reply of {length} bytes")
                body = await reader.readexactly(length)
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError) as exc:
        raise WorkerError(f"{type(exc).__name__}: {exc}") from None
    return status, body


async def _ask_all(paths: Sequence[str], target: str, timeout_s: float) -> list[tuple[int, bytes] | None]:
    """Every worker's answer in worker order; None (logged) for one that did not answer."""
    answers = await asyncio.gather(*(ask_worker(p, target, timeout_s) for p in paths), return_exceptions=True)
    out: list[tuple[int, bytes] | None] = []
    for index, answer in enumerate(answers):
        if isinstance(answer, BaseException):
            if not isinstance(answer, WorkerError):
                raise answer
            log.warning("worker %d did not answer %s: %s", index, target, answer)
            out.append(None)
        else:
            out.append(answer)
    return out


def add_fanout_routes(router: Router, paths: Sequence[str], *, readyz_timeout_s: float,
                      metrics: bool) -> None:
    """/livez: 200 when every worker answers 200. /readyz (spec §2.15 body): a component is "ok"
    only when every worker's check of it is; a worker that does not answer makes the status
    "error" (503). /metrics (when enabled): every worker's series with a ``worker`` label, plus
    ``obscura_worker_up``."""

    async def livez(request) -> Response:
        answers = await _ask_all(paths, "/livez", _LIVEZ_TIMEOUT_S)
        return Response(200 if all(a is not None and a[0] == 200 for a in answers) else 503)

    async def readyz(request) -> Response:
        merged = ReadinessReport(database=True, storage=True, pubsub=True).as_json()  # the §2.15 keys
        for index, answer in enumerate(await _ask_all(paths, "/readyz", readyz_timeout_s)):
            report = _report(answer)
            if report is None:
                if answer is not None:
                    log.warning("worker %d answered /readyz with %d", index, answer[0])
                merged["status"] = "error"
                continue
            for key in merged:
                if report.get(key) != "ok":
                    merged[key] = "error"
        return json_response(merged, status=200 if merged["status"] == "ok" else 503)

    async def scrape(request) -> Response:
        answers = await _ask_all(paths, "/metrics", _METRICS_TIMEOUT_S)
        pages = [(str(i), a[1] if a is not None and a[0] == 200 else None) for i, a in enumerate(answers)]
        return Response(200, merge_prometheus(pages), content_type=CONTENT_TYPE)

    router.add("GET", "/livez", livez, name="livez")
    router.add("GET", "/readyz", readyz, name="readyz")
    if metrics:
        router.add("GET", "/metrics", scrape, name="metrics")


def _report(answer: tuple[int, bytes] | None) -> dict | None:
    if answer is None or answer[0] not in (200, 503):
        return None
    try:
        report = orjson.loads(answer[1])
    except orjson.JSONDecodeError:
        return None
    return report if isinstance(report, dict) else None
