"""OpenTelemetry lives in one module, and a node without a collector builds none of it (issue 7 §1)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import obscura
from tests.fixtures.server import REPO

PACKAGE = os.path.dirname(obscura.__file__)


def _imports(path: str) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_telemetry_pipeline_imports_opentelemetry():
    offenders, seen = [], 0
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith((".py", ".pyx")):
                path = os.path.join(root, name)
                seen += 1
                if any(m == "opentelemetry" or m.startswith("opentelemetry.") for m in _imports(path)):
                    offenders.append(os.path.relpath(path, PACKAGE))
    assert seen > 20
    assert sorted(offenders) == [os.path.join("telemetry", "pipeline.py")]


def test_disabled_telemetry_never_loads_the_sdk():
    # A fresh interpreter: the test process itself has imported OpenTelemetry for other tests.
    script = textwrap.dedent("""
        import asyncio, sys
        from obscura.app import App
        from obscura.config import load_settings
        from obscura.http import HttpServer, Router
        from obscura.telemetry import Telemetry

        settings = load_settings(environ={})
        app = App(settings)
        t = app.telemetry
        t.start()
        t.counter("obscura_x_total").add(1)
        t.histogram("obscura_x_seconds").record(0.1)
        t.gauge("obscura_x").set(1)
        with t.span("work"):
            pass
        assert not t.enabled and not t.running and t.http_observer() is None
        assert t.instruments()["obscura_x_seconds"]._dist is None  # no buckets kept while disabled
        asyncio.run(t.shutdown(1))
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "SDK loaded"
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSCURA_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


async def test_default_node_has_no_observer_but_still_counts_in_memory(app, http, mgmt):
    assert not app.telemetry.enabled
    assert app._r.main_server.observer is None
    assert (await http.get("/openapi.yaml")).status_code == 200
    assert app.telemetry.value("http_server_requests_total") is None
    assert (await mgmt.get("/metrics")).status_code == 404  # the scrape is off by default
    assert (await mgmt.get("/readyz")).status_code == 200
    assert app.telemetry.value("obscura_health_status", {"component": "database"}) == 1
