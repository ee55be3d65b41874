"""The load driver runs end to end at a tiny scale and reports every figure (no timed assertions)."""

from __future__ import annotations

import json

from bench import frontdoor
from bench.driver import evaluate, main, markdown


def test_driver_reports_every_figure(pg_server_dsn, tmp_path):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["--scenarios", "embedded:1", "--seconds", "1", "--latency-seconds", "1", "--baseline-seconds", "0.5",
                 "--idle", "20", "--recipients", "3", "--senders", "2", "--warmup-seconds", "0.5",
                 "--pg-url", pg_server_dsn, "--json", str(out_json), "--md", str(out_md)]) == 0
    run = json.loads(out_json.read_text())
    assert run["echo"]["server_cpu_us_per_echo"] > 0 and run["pg_ceiling"]["msgs_per_s"] > 0
    (result,) = run["scenarios"]
    assert result["relay_msgs_per_s"] > 0 and result["server_cpu_us_per_msg"] > 0
    assert result["idle_connections"] == 20 and result["idle_failures"] == 0
    assert result["send_errors"] == 0 and result["duplicates"] == 0
    assert {"goal1_relay_ratio", "goal2_cpu_ratio", "goal3_met", "goal4_met"} <= set(result["goals"])
    assert "| embedded, 1 node |" in out_md.read_text()


def test_markdown_says_when_idle_memory_was_not_measured():
    run = {"echo": {"echo_per_s": 1000.0, "server_cpu_us_per_echo": 10.0}, "pg_ceiling": {"msgs_per_s": 5000.0}}
    base = {"scenario": "pg, 1 node", "relay_msgs_per_s": 2000.0, "server_cpu_us_per_msg": 50.0,
            "latency_p50_ms": 2.0, "latency_p99_ms": 9.0}
    measured = {**base, "scenario": "pg, 2 nodes", "rss_bytes_per_idle_connection": 15 * 1024}
    for r in (base, measured):
        r["goals"] = evaluate(r, run["echo"], run["pg_ceiling"])
    text = markdown({**run, "scenarios": [base, measured]})
    assert "| - (not measured) |" in text and "0.0 KiB" not in text  # --idle 0 skips the phase
    assert "| 15.0 KiB met |" in text


def test_frontdoor_reports_cpu_per_request(capsys):
    assert frontdoor.main(["--seconds", "0.5", "--rounds", "1", "--echo-seconds", "0", "--conns", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (round_,) = result["rounds"]
    assert round_["requests_per_s"] > 0 and result["median_cpu_us_per_request"] > 0
