"""The load driver runs end to end at a tiny scale and reports every figure (no timed assertions)."""

from __future__ import annotations

import json

from bench.driver import main


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
