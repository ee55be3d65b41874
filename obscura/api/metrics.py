"""GET /metrics on the management port: Prometheus text format, off by default (decisions §2, issue 7 §6)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from obscura.http.response import Response
from obscura.http.router import Router
from obscura.telemetry import HistogramPoint, MetricFamily, Telemetry

__all__ = ["add_metrics_routes", "render_prometheus", "merge_prometheus", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def add_metrics_routes(router: Router, telemetry: Telemetry) -> None:
    async def metrics(request) -> Response:
        return Response(200, render_prometheus(telemetry.collect()), content_type=CONTENT_TYPE)

    router.add("GET", "/metrics", metrics, name="metrics")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    items = [*labels.items(), extra] if extra else list(labels.items())
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def render_prometheus(families: Iterable[MetricFamily]) -> bytes:
    """Text exposition format 0.0.4: HELP, TYPE, then one line per sample (histograms cumulative)."""
    lines: list[str] = []
    for fam in families:
        if fam.description:
            lines.append(f"# HELP {fam.name} {_escape(fam.description)}")
        lines.append(f"# TYPE {fam.name} {'gauge' if fam.kind == 'updowncounter' else fam.kind}")
        for labels, value in fam.points:
            if isinstance(value, HistogramPoint):
                running = 0
                for bound, count in zip((*value.bounds, math.inf), value.counts):
                    running += count
                    lines.append(f"{fam.name}_bucket{_labels(labels, ('le', _num(float(bound))))} {running}")
                lines.append(f"{fam.name}_sum{_labels(labels)} {_num(value.sum)}")
                lines.append(f"{fam.name}_count{_labels(labels)} {value.count}")
            else:
                lines.append(f"{fam.name}{_labels(labels)} {_num(value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def merge_prometheus(pages: Sequence[tuple[str, bytes | None]], label: str = "worker") -> bytes:
    """One exposition from several processes' pages (as render_prometheus writes them), given as
    (label value, page or None when that process did not answer). Every sample gets
    ``label="<value>"``, so series never collide; each family keeps one HELP and TYPE, followed by
    the samples of every process. ``obscura_<label>_up`` says which pages were there."""
    headers: dict[str, dict[str, str]] = {}  # family -> {"HELP": line, "TYPE": line}, first seen wins
    samples: dict[str, list[str]] = {}
    for value, page in pages:
        if page is None:
            continue
        tag = f'{label}="{_escape(value)}"'
        family = ""
        for line in page.decode().splitlines():
            if not line:
                continue
            if line.startswith("# "):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    headers.setdefault(family, {}).setdefault(parts[1], line)
                    samples.setdefault(family, [])
                continue
            brace, space = line.find("{"), line.find(" ")
            if 0 <= brace < space:  # name{labels} value
                rest = line[brace + 1:]
                line = f"{line[:brace + 1]}{tag}{'' if rest.startswith('}') else ','}{rest}"
            elif space > 0:  # name value
                line = f"{line[:space]}{{{tag}}}{line[space:]}"
            samples.setdefault(family or line.split("{", 1)[0], []).append(line)
    up = f"obscura_{label}_up"
    lines = [f"# HELP {up} 1 when the {label} answered this scrape", f"# TYPE {up} gauge"]
    lines += [f'{up}{{{label}="{_escape(value)}"}} {0 if page is None else 1}' for value, page in pages]
    for family, rows in samples.items():
        head = headers.get(family, {})
        lines += [head[k] for k in ("HELP", "TYPE") if k in head]
        lines += rows
    return ("\n".join(lines) + "\n").encode()
