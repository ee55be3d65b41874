"""Replays every committed seed of every fuzz corpus through every fuzz target (style.md §14)."""

from __future__ import annotations

import pathlib

import pytest

from fuzz import frames_target, headers_target, http_target, keys_target, resp_target
from fuzz.json_target import JsonHarness

ROOT = pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
TARGETS = {"frames": frames_target.check, "http": http_target.check, "keys": keys_target.check,
           "headers": headers_target.check, "resp": resp_target.check}
SEEDS = sorted(p for p in ROOT.glob("*/*") if p.is_file())


def test_every_target_has_seeds():
    assert {p.parent.name for p in SEEDS} >= set(TARGETS) | {"json"}
    assert len(SEEDS) >= 60


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_through_target(target):
    check = TARGETS[target]
    failures = []
    for seed in SEEDS:
        try:
            check(seed.read_bytes())
        except AssertionError as exc:
            failures.append(f"{seed.parent.name}/{seed.name}: {exc}")
    assert not failures, failures


async def test_every_seed_through_json_bodies(http):
    """The JSON body target needs a live App: the `app` fixture (real PostgreSQL) serves it."""
    harness = JsonHarness(http)
    await harness.setup()
    failures = []
    for seed in SEEDS:
        try:
            await harness.check(seed.read_bytes())
        except AssertionError as exc:
            failures.append(f"{seed.parent.name}/{seed.name}: {exc}")
    assert not failures, failures


# What each target fuzzes must be imported with the target, before atheris instruments the loaded
# code: a module first imported inside check() runs without coverage guidance (the frames target's
# Python twin did, until a run showed 56 coverage edges where there are 188).
FUZZED = {"frames_target": ["obscura._speedups.frames_py"], "http_target": ["obscura.http.protocol"],
          "keys_target": ["obscura.domain.keys", "obscura.services.xeddsa"],
          "headers_target": ["obscura.services.tokens", "obscura.http.request"], "resp_target": ["obscura.coord.resp"]}


@pytest.mark.parametrize("target", sorted(FUZZED))
def test_the_fuzzed_code_is_loaded_before_instrumentation(target):
    import subprocess
    import sys

    fuzz_dir = ROOT.parent
    code = (f"import sys; sys.path.insert(0, {str(fuzz_dir)!r}); import {target}; "
            f"missing = [m for m in {FUZZED[target]!r} if m not in sys.modules]; "
            "sys.exit(f'not loaded at import: {missing}' if missing else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=fuzz_dir.parent, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
