"""The load driver runs end to end at a tiny scale and reports every figure (no timed assertions)."""

from __future__ import annotations

import json
import math

from bench import frontdoor, stall
from bench.driver import evaluate, main, markdown
from bench.relay import _bucket_quantile, _server_latency


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
    assert result["server_latency_samples"] > 0 and result["server_latency_p50_ms"] > 0  # from /metrics
    assert result["goals"]["goal3_measured"] == "server"
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


def test_server_latency_quantiles_from_bucket_deltas():
    inf = math.inf
    before = {0.001: 10.0, 0.002: 10.0, 0.005: 10.0, inf: 10.0}
    after = {0.001: 60.0, 0.002: 100.0, 0.005: 109.0, inf: 110.0}  # 50 / 40 / 9 / 1 new observations
    got = _server_latency(before, after)
    assert got["server_latency_samples"] == 100
    assert math.isclose(got["server_latency_p50_ms"], 1.0)  # the 50th of 100 ends the first bucket
    assert math.isclose(got["server_latency_p99_ms"], 5.0)  # the 99th is the last inside 5 ms
    assert _bucket_quantile([0.001, inf], [1.0, 2.0], 0.99) == 1.0  # beyond the last bound: that bound
    assert _server_latency(None, after) == {}  # --workers: not measured
    assert _server_latency(after, after)["server_latency_p50_ms"] is None  # nothing delivered


def test_goal3_uses_the_servers_own_figure_on_one_process():
    echo, ceiling = {"server_cpu_us_per_echo": 10.0}, {"msgs_per_s": 5000.0}
    base = {"relay_msgs_per_s": 2000.0, "server_cpu_us_per_msg": 50.0, "latency_p50_ms": 4.0, "latency_p99_ms": 12.0,
            "server_latency_p50_ms": 0.8, "server_latency_p99_ms": 4.0}
    one = evaluate({**base, "nodes": 1, "workers": 1}, echo, ceiling)
    two = evaluate({**base, "nodes": 2, "workers": 1}, echo, ceiling)
    assert (one["goal3_measured"], one["goal3_met"]) == ("server", True)
    assert (two["goal3_measured"], two["goal3_met"]) == ("client", False)


def test_gate_fails_only_when_the_better_of_two_measurements_regresses():
    from bench.gate import best, compare
    baseline = {"goal1_relay_ratio": 0.10, "goal2_cpu_ratio": 20.0}
    slow = {"goal1_relay_ratio": 0.080, "goal2_cpu_ratio": 22.0}   # goal 1 below 0.085
    noisy = {"goal1_relay_ratio": 0.095, "goal2_cpu_ratio": 25.0}  # goal 2 above 23.53
    assert len(compare(slow, baseline)) == 1 and len(compare(noisy, baseline)) == 1
    assert compare(best(slow, noisy), baseline) == []  # each goal held in one of them
    worse = {"goal1_relay_ratio": 0.070, "goal2_cpu_ratio": 26.0}
    assert len(compare(best(slow, worse), baseline)) == 1  # goal 1 regressed in both
    assert len(compare(best(noisy, worse), baseline)) == 1  # goal 2 regressed in both



def test_stall_probe_reports_round_trips_under_churn(pg_server_dsn):
    args = stall.parse_args(["--connections", "30", "--seconds", "1.5", "--churn", "10", "--churn-pool", "5",
                             "--sends", "20", "--users", "3", "--offline-users", "2", "--pg-url", pg_server_dsn])
    result = stall.run(args)
    assert result["sessions_held"] == 30 and result["hold_failures"] == 0
    assert result["probes"] > 50 and 0 < result["probe_p50_ms"] <= result["probe_p99_ms"] <= result["probe_max_ms"]
    assert result["churn_opened"] >= 10 and result["churn_closed"] >= 5 and result["churn_failures"] == 0
    assert result["messages_sent"] > 0
