"""The Grafana dashboard parses and only queries metrics of the catalogue (spec §8.1, issue 7 §7)."""

from __future__ import annotations

import json
import os
import re

from tests.fixtures.server import REPO

# spec §8.1 table, the planned gauges, RED, pool and worker metrics this server adds.
CATALOGUE = {
    "obscura_registrations_total", "obscura_logins_total", "obscura_token_refreshes_total", "obscura_logouts_total",
    "obscura_devices_created_total", "obscura_devices_deleted_total", "obscura_key_takeovers_total",
    "obscura_prekey_threshold_reached_total", "obscura_messages_sent_total", "obscura_message_fetch_batch_size",
    "obscura_messages_overflow_total", "obscura_notifications_sent_total", "obscura_notifications_received_total",
    "obscura_notifications_unrouted_total", "obscura_notification_channels",
    "obscura_notification_cleanup_duration_seconds", "obscura_notification_channels_reclaimed_total",
    "obscura_notification_worker_processed_total", "obscura_websocket_connections", "obscura_websocket_ack_batch_size",
    "obscura_websocket_acks_received_total", "obscura_websocket_ack_dropped_total",
    "obscura_websocket_outbound_dropped_total", "obscura_attachment_upload_bytes_total",
    "obscura_attachment_upload_size_bytes", "obscura_attachments_deleted_total", "obscura_attachment_cleanup_errors_total",
    "obscura_backup_upload_bytes_total", "obscura_backup_upload_size_bytes", "obscura_backup_cleanup_runs",
    "obscura_backup_cleanup_cleaned", "obscura_backup_cleanup_errors", "obscura_backup_cleanup_orphans_deleted", "obscura_push_notifications_sent_total",
    "obscura_push_notification_errors_total", "obscura_push_invalid_tokens_total", "obscura_rate_limit_decisions_total",
    "obscura_health_status",
    "obscura_users_total", "obscura_devices_total", "obscura_pending_messages_total", "obscura_attachments_total_count",
    "obscura_attachments_total_bytes", "obscura_state_poller_errors_total", "obscura_db_pool_active_connections",
    "obscura_db_pool_idle_connections", "obscura_db_pool_max_connections", "obscura_websocket_session_duration_seconds",
    "http_server_requests_total", "http_server_request_duration_seconds",
    "obscura_messages_delivered_directly_total", "obscura_message_delivery_latency_seconds",
}


def test_dashboard_queries_only_known_metrics():
    with open(os.path.join(REPO, "dashboards", "obscura.json"), encoding="utf-8") as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    assert len(exprs) > 20
    used = {re.sub(r"_bucket$", "", m) for e in exprs for m in re.findall(r"\b((?:obscura|http_server)_[a-z_]+)\{", e)}
    assert used, exprs
    assert used <= CATALOGUE, used - CATALOGUE
    assert {"http_server_requests_total", "http_server_request_duration_seconds", "obscura_users_total",
            "obscura_db_pool_active_connections", "obscura_health_status"} <= used


def test_database_wide_counts_are_not_summed_over_processes():
    """Every node and every worker polls the same database (obscura/workers/state_poller.py), so
    a sum over them would multiply the count: the panels take the max."""
    from obscura.workers.state_poller import STATE_GAUGES

    with open(os.path.join(REPO, "dashboards", "obscura.json"), encoding="utf-8") as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    state = [e for e in exprs if any(f"{name}{{" in e for name, _ in STATE_GAUGES.values())]
    assert len(state) >= 4
    assert all(e.startswith("max(") for e in state), state
