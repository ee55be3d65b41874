"""One frozen Settings object: defaults < OBSCURA_* environment < CLI flags (spec §7)."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "Settings", "OPTIONS", "load_settings", "add_cli_flags", "redacted_items"]


class ConfigError(ValueError):
    """An option has an invalid value; the message names the option."""


def _opt(default: Any, env: str, flag: str, help: str, *, kind: str = "", secret: bool = False,
         min: float | None = None, max: float | None = None, choices: Sequence[str] = (),
         ours: bool = False) -> Any:
    return field(default=default, metadata={
        "env": env, "flag": flag, "help": help, "kind": kind, "secret": secret,
        "min": min, "max": max, "choices": tuple(choices), "ours": ours,
    })


_PRIVATE_NETS = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.1/32"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option of spec §7 (same env names, flags and defaults) plus our own additions."""

    # -- data and modes (ours) --------------------------------------------------------------
    data_dir: str = _opt("./.obscura", "OBSCURA_DATA_DIR", "--data-dir",
                         "folder for the embedded PostgreSQL and local blobs", ours=True)
    ttl_days: int = _opt(30, "OBSCURA_TTL_DAYS", "--ttl-days", "TTL of messages and attachments", min=1)
    # -- server ---------------------------------------------------------------------------------
    server_host: str = _opt("0.0.0.0", "OBSCURA_SERVER_HOST", "--server-host", "bind address of both listeners")
    server_port: int = _opt(3000, "OBSCURA_SERVER_PORT", "--server-port", "API and WebSocket port (0 = any free port)", min=0, max=65535)
    server_mgmt_port: int = _opt(9090, "OBSCURA_SERVER_MGMT_PORT", "--server-mgmt-port", "/livez, /readyz and optional /metrics port (0 = any free port)", min=0, max=65535)
    server_shutdown_timeout_secs: int = _opt(5, "OBSCURA_SERVER_SHUTDOWN_TIMEOUT_SECS", "--server-shutdown-timeout-secs", "graceful shutdown budget", min=0)
    server_request_timeout_secs: int = _opt(30, "OBSCURA_SERVER_REQUEST_TIMEOUT_SECS", "--server-request-timeout-secs", "timeout of auth and standard routes (408)", min=1)
    server_global_timeout_secs: int = _opt(600, "OBSCURA_SERVER_GLOBAL_TIMEOUT_SECS", "--server-global-timeout-secs", "outer timeout of every request (408)", min=1)
    server_trusted_proxies: tuple = _opt(_PRIVATE_NETS, "OBSCURA_SERVER_TRUSTED_PROXIES", "--trusted-proxies", "CIDRs whose X-Forwarded-For is believed", kind="cidrs")
    server_max_header_bytes: int = _opt(16384, "OBSCURA_SERVER_MAX_HEADER_BYTES", "--server-max-header-bytes", "request line plus headers (431 above)", min=1024, ours=True)
    server_max_headers: int = _opt(100, "OBSCURA_SERVER_MAX_HEADERS", "--server-max-headers", "header count per request (431 above)", min=1, ours=True)
    server_max_body_bytes: int = _opt(2 * 1024 * 1024, "OBSCURA_SERVER_MAX_BODY_BYTES", "--server-max-body-bytes", "buffered (JSON, protobuf) body limit (413 above)", min=1, ours=True)
    server_header_timeout_secs: int = _opt(10, "OBSCURA_SERVER_HEADER_TIMEOUT_SECS", "--server-header-timeout-secs", "time to receive a request's headers (slow clients get 408)", min=1, ours=True)
    server_keepalive_timeout_secs: int = _opt(75, "OBSCURA_SERVER_KEEPALIVE_TIMEOUT_SECS", "--server-keepalive-timeout-secs", "idle keep-alive connection lifetime", min=1, ours=True)
    server_workers: int = _opt(1, "OBSCURA_WORKERS", "--workers", "event-loop processes sharing the port (SO_REUSEPORT); more than 1 needs OBSCURA_PUBSUB_URL and a fixed port", min=1, max=256, ours=True)
    server_access_log: bool = _opt(True, "OBSCURA_SERVER_ACCESS_LOG", "--server-access-log", "one log line per request (no IPs)", ours=True)
    # -- database -------------------------------------------------------------------------------
    db_url: str | None = _opt(None, "OBSCURA_DATABASE_URL", "--db-url", "PostgreSQL DSN; unset = embedded PostgreSQL in the data dir", secret=True)
    db_max_connections: int = _opt(20, "OBSCURA_DATABASE_MAX_CONNECTIONS", "--db-max-connections", "pool max", min=1)
    db_min_connections: int = _opt(5, "OBSCURA_DATABASE_MIN_CONNECTIONS", "--db-min-connections", "pool min", min=0)
    db_acquire_timeout_secs: int = _opt(3, "OBSCURA_DATABASE_ACQUIRE_TIMEOUT_SECS", "--db-acquire-timeout-secs", "pool acquire timeout", min=1)
    db_idle_timeout_secs: int = _opt(600, "OBSCURA_DATABASE_IDLE_TIMEOUT_SECS", "--db-idle-timeout-secs", "idle connection close", min=0)
    db_max_lifetime_secs: int = _opt(1800, "OBSCURA_DATABASE_MAX_LIFETIME_SECS", "--db-max-lifetime-secs", "connection recycle (queries per connection bound)", min=0)
    # -- pub/sub --------------------------------------------------------------------------------
    pubsub_url: str | None = _opt(None, "OBSCURA_PUBSUB_URL", "--pubsub-url", "Redis/Valkey URL; unset = in-process coordination (one node)", secret=True)
    pubsub_min_backoff_secs: int = _opt(1, "OBSCURA_PUBSUB_MIN_BACKOFF_SECS", "--pubsub-min-backoff-secs", "resubscribe backoff min", min=0)
    pubsub_max_backoff_secs: int = _opt(30, "OBSCURA_PUBSUB_MAX_BACKOFF_SECS", "--pubsub-max-backoff-secs", "resubscribe backoff max", min=1)
    # -- auth -----------------------------------------------------------------------------------
    auth_jwt_secret: str = _opt("change_me_in_production", "OBSCURA_AUTH_JWT_SECRET", "--auth-jwt-secret", "HS256 key", secret=True)
    auth_token_ttl_secs: int = _opt(900, "OBSCURA_AUTH_TOKEN_TTL_SECS", "--auth-token-ttl-secs", "access JWT lifetime", min=1)
    auth_refresh_token_ttl_days: int = _opt(30, "OBSCURA_AUTH_REFRESH_TOKEN_TTL_DAYS", "--auth-refresh-token-ttl-days", "refresh token lifetime (0 = expires at once)", min=0)
    auth_refresh_token_cleanup_interval_secs: int = _opt(86400, "OBSCURA_AUTH_REFRESH_TOKEN_CLEANUP_INTERVAL_SECS", "--auth-refresh-token-cleanup-interval-secs", "0 disables the worker", min=0)
    auth_max_devices_per_user: int = _opt(10, "OBSCURA_AUTH_MAX_DEVICES_PER_USER", "--auth-max-devices-per-user", "device cap per account", min=1)
    # -- rate limits ------------------------------------------------------------------------------
    rate_limit_per_second: int = _opt(10, "OBSCURA_RATE_LIMIT_PER_SECOND", "--rate-limit-per-second", "standard tier rate (0 is treated as 1)", min=0)
    rate_limit_burst: int = _opt(20, "OBSCURA_RATE_LIMIT_BURST", "--rate-limit-burst", "standard tier burst", min=1)
    rate_limit_auth_per_second: int = _opt(1, "OBSCURA_RATE_LIMIT_AUTH_PER_SECOND", "--auth-rate-limit-per-second", "auth tier rate (0 is treated as 1)", min=0)
    rate_limit_auth_burst: int = _opt(3, "OBSCURA_RATE_LIMIT_AUTH_BURST", "--auth-rate-limit-burst", "auth tier burst", min=1)
    # -- messaging ------------------------------------------------------------------------------
    messaging_inbox_max_size: int = _opt(1000, "OBSCURA_MESSAGING_INBOX_MAX_SIZE", "--messaging-inbox-max-size", "max pending messages per device", min=1)
    messaging_cleanup_interval_secs: int = _opt(300, "OBSCURA_MESSAGING_CLEANUP_INTERVAL_SECS", "--messaging-cleanup-interval-secs", "message cleanup period", min=1)
    messaging_send_batch_limit: int = _opt(100, "OBSCURA_MESSAGING_SEND_BATCH_LIMIT", "--messaging-send-batch-limit", "max submissions per send (413 above)", min=1)
    messaging_idempotency_ttl_secs: int = _opt(86400, "OBSCURA_MESSAGING_IDEMPOTENCY_TTL_SECS", "--messaging-idempotency-ttl-secs", "idempotency cache TTL", min=1)
    pre_key_refill_threshold: int = _opt(20, "OBSCURA_PRE_KEY_REFILL_THRESHOLD", "--messaging-pre-key-refill-threshold", "one-time prekeys are low below this count", min=0)
    pre_keys_max: int = _opt(100, "OBSCURA_PRE_KEYS_MAX", "--messaging-pre-keys-max", "max one-time prekeys per upload and per device", min=1)
    # -- notifications ----------------------------------------------------------------------------
    notifications_cleanup_interval_secs: int = _opt(60, "OBSCURA_NOTIFICATIONS_CLEANUP_INTERVAL_SECS", "--notifications-cleanup-interval-secs", "reclaim idle local channels", min=1)
    notifications_global_channel_capacity: int = _opt(1024, "OBSCURA_NOTIFICATIONS_GLOBAL_CHANNEL_CAPACITY", "--notifications-global-channel-capacity", "node-wide pub/sub fan-in buffer", min=1)
    notifications_user_channel_capacity: int = _opt(64, "OBSCURA_NOTIFICATIONS_USER_CHANNEL_CAPACITY", "--notifications-user-channel-capacity", "per-device local event buffer", min=1)
    notifications_push_delay_secs: int = _opt(2, "OBSCURA_NOTIFICATIONS_PUSH_DELAY_SECS", "--notifications-push-delay-secs", "delay before the fallback push", min=0)
    notifications_worker_interval_secs: int = _opt(1, "OBSCURA_NOTIFICATIONS_WORKER_INTERVAL_SECS", "--notifications-worker-interval-secs", "push worker poll period", min=1)
    notifications_worker_concurrency: int = _opt(100, "OBSCURA_NOTIFICATIONS_WORKER_CONCURRENCY", "--notifications-worker-concurrency", "in-flight pushes and lease batch size", min=1)
    notifications_push_queue_key: str = _opt("jobs:push_notifications", "OBSCURA_NOTIFICATIONS_PUSH_QUEUE_KEY", "--notifications-push-queue-key", "push job sorted-set key")
    notifications_channel_prefix: str = _opt("user:", "OBSCURA_NOTIFICATIONS_CHANNEL_PREFIX", "--notifications-channel-prefix", "pub/sub channel prefix; the device id is appended")
    notifications_visibility_timeout_secs: int = _opt(30, "OBSCURA_NOTIFICATIONS_VISIBILITY_TIMEOUT_SECS", "--notifications-visibility-timeout-secs", "push job lease", min=1)
    notifications_invalid_token_cleanup_interval_secs: int = _opt(5, "OBSCURA_NOTIFICATIONS_INVALID_TOKEN_CLEANUP_INTERVAL_SECS", "--notifications-invalid-token-cleanup-interval-secs", "invalid-token flush period", min=1)
    notifications_invalid_token_cleanup_batch_size: int = _opt(50, "OBSCURA_NOTIFICATIONS_INVALID_TOKEN_CLEANUP_BATCH_SIZE", "--notifications-invalid-token-cleanup-batch-size", "invalid-token flush size", min=1)
    notifications_invalid_token_cleanup_channel_capacity: int = _opt(256, "OBSCURA_NOTIFICATIONS_INVALID_TOKEN_CLEANUP_CHANNEL_CAPACITY", "--notifications-invalid-token-cleanup-channel-capacity", "invalid-token queue size", min=1)
    # -- attachments and backups ------------------------------------------------------------------
    attachment_prefix: str = _opt("attachments/", "OBSCURA_ATTACHMENT_PREFIX", "--attachment-prefix", "object key prefix")
    attachment_max_size_bytes: int = _opt(52428800, "OBSCURA_ATTACHMENT_MAX_SIZE_BYTES", "--attachment-max-size-bytes", "largest attachment", min=1)
    attachment_min_size_bytes: int = _opt(1, "OBSCURA_ATTACHMENT_MIN_SIZE_BYTES", "--attachment-min-size-bytes", "smallest attachment", min=0)
    attachment_timeout_secs: int = _opt(120, "OBSCURA_ATTACHMENT_TIMEOUT_SECS", "--attachment-timeout-secs", "attachment route timeout", min=1)
    attachment_cleanup_interval_secs: int = _opt(3600, "OBSCURA_ATTACHMENT_CLEANUP_INTERVAL_SECS", "--attachment-cleanup-interval-secs", "attachment GC period", min=1)
    attachment_cleanup_batch_size: int = _opt(100, "OBSCURA_ATTACHMENT_CLEANUP_BATCH_SIZE", "--attachment-cleanup-batch-size", "attachment GC batch", min=1)
    backup_prefix: str = _opt("backups/", "OBSCURA_BACKUP_PREFIX", "--backup-prefix", "object key prefix")
    backup_max_size_bytes: int = _opt(2097152, "OBSCURA_BACKUP_MAX_SIZE_BYTES", "--backup-max-size-bytes", "largest backup", min=1)
    backup_min_size_bytes: int = _opt(32, "OBSCURA_BACKUP_MIN_SIZE_BYTES", "--backup-min-size-bytes", "smallest backup", min=0)
    backup_timeout_secs: int = _opt(60, "OBSCURA_BACKUP_TIMEOUT_SECS", "--backup-timeout-secs", "backup route timeout", min=1)
    backup_stale_threshold_mins: int = _opt(30, "OBSCURA_BACKUP_STALE_THRESHOLD_MINS", "--backup-stale-threshold-mins", "age after which an UPLOADING slot is stale", min=1)
    backup_cleanup_interval_secs: int = _opt(300, "OBSCURA_BACKUP_CLEANUP_INTERVAL_SECS", "--backup-cleanup-interval-secs", "stale-slot GC period", min=1)
    # -- blob storage ---------------------------------------------------------------------------
    storage_backend: str = _opt("auto", "OBSCURA_STORAGE_BACKEND", "--storage-backend", "auto (s3 when an endpoint or keys are set, else local), local, s3 or memory", choices=("auto", "local", "s3", "memory"), ours=True)
    storage_local_path: str | None = _opt(None, "OBSCURA_STORAGE_LOCAL_PATH", "--storage-local-path", "blob folder of the local backend (default <data dir>/blobs)", ours=True)
    storage_bucket: str = _opt("obscura-storage", "OBSCURA_STORAGE_BUCKET", "--storage-bucket", "bucket for attachments and backups")
    storage_region: str = _opt("us-east-1", "OBSCURA_STORAGE_REGION", "--storage-region", "S3 region")
    storage_endpoint: str | None = _opt(None, "OBSCURA_STORAGE_ENDPOINT", "--storage-endpoint", "custom S3 endpoint (MinIO, ...)")
    storage_access_key: str | None = _opt(None, "OBSCURA_STORAGE_ACCESS_KEY", "--storage-access-key", "static S3 credentials (with the secret key)", secret=True)
    storage_secret_key: str | None = _opt(None, "OBSCURA_STORAGE_SECRET_KEY", "--storage-secret-key", "static S3 credentials (with the access key)", secret=True)
    storage_force_path_style: bool = _opt(False, "OBSCURA_STORAGE_FORCE_PATH_STYLE", "--storage-force-path-style", "path-style S3 addressing (MinIO)")
    # -- websocket ------------------------------------------------------------------------------
    ws_outbound_buffer_size: int = _opt(32, "OBSCURA_WS_OUTBOUND_BUFFER_SIZE", "--ws-outbound-buffer-size", "per-session outbound queue (frames)", min=1)
    ws_ack_buffer_size: int = _opt(1000, "OBSCURA_WS_ACK_BUFFER_SIZE", "--ws-ack-buffer-size", "per-session ACK queue (ids)", min=1)
    ws_ack_batch_size: int = _opt(100, "OBSCURA_WS_ACK_BATCH_SIZE", "--ws-ack-batch-size", "ids per delete", min=1)
    ws_ack_flush_interval_ms: int = _opt(500, "OBSCURA_WS_ACK_FLUSH_INTERVAL_MS", "--ws-ack-flush-interval-ms", "max delay before a delete", min=1)
    ws_prekey_debounce_interval_ms: int = _opt(500, "OBSCURA_WS_PREKEY_DEBOUNCE_INTERVAL_MS", "--ws-prekey-debounce-interval-ms", "PreKeyStatus debounce", min=0)
    ws_ping_interval_secs: int = _opt(30, "OBSCURA_WS_PING_INTERVAL_SECS", "--ws-ping-interval-secs", "server ping period (0 is treated as 1)", min=0)
    ws_ping_timeout_secs: int = _opt(10, "OBSCURA_WS_PING_TIMEOUT_SECS", "--ws-ping-timeout-secs", "liveness grace", min=0)
    ws_message_fetch_batch_size: int = _opt(50, "OBSCURA_WS_MESSAGE_FETCH_BATCH_SIZE", "--ws-message-fetch-batch-size", "rows per pump query", min=1)
    ws_max_batch_bytes: int = _opt(8388608, "OBSCURA_WS_MAX_BATCH_BYTES", "--ws-max-batch-bytes", "envelope bytes per EnvelopeBatch frame (soft)", min=1)
    ws_ticket_ttl_secs: int = _opt(30, "OBSCURA_WS_TICKET_TTL_SECS", "--ws-ticket-ttl-secs", "gateway ticket lifetime", min=1)
    ws_max_frame_bytes: int = _opt(16 * 1024 * 1024, "OBSCURA_WS_MAX_FRAME_BYTES", "--ws-max-frame-bytes", "largest inbound WebSocket frame", min=125, ours=True)
    ws_read_buffer_bytes: int = _opt(1024, "OBSCURA_WS_READ_BUFFER_BYTES", "--ws-read-buffer-bytes", "initial read buffer per socket (idle memory)", min=256, ours=True)
    # -- health ---------------------------------------------------------------------------------
    health_db_timeout_ms: int = _opt(2000, "OBSCURA_HEALTH_DB_TIMEOUT_MS", "--health-db-timeout-ms", "readiness database check timeout", min=1)
    health_storage_timeout_ms: int = _opt(2000, "OBSCURA_HEALTH_STORAGE_TIMEOUT_MS", "--health-storage-timeout-ms", "readiness storage check timeout", min=1)
    health_pubsub_timeout_ms: int = _opt(2000, "OBSCURA_HEALTH_PUBSUB_TIMEOUT_MS", "--health-pubsub-timeout-ms", "readiness pub/sub check timeout", min=1)
    # -- push -----------------------------------------------------------------------------------
    fcm_project_id: str | None = _opt(None, "OBSCURA_FCM_PROJECT_ID", "--fcm-project-id", "FCM project (FCM is on when this and the credentials file are set)")
    fcm_credentials_file: str | None = _opt(None, "OBSCURA_FCM_CREDENTIALS_FILE", "--fcm-credentials-file", "service-account JSON path")
    fcm_ttl_secs: int = _opt(604800, "OBSCURA_FCM_TTL_SECS", "--fcm-ttl-secs", "Android message TTL", min=0)
    fcm_endpoint: str = _opt("https://fcm.googleapis.com", "OBSCURA_FCM_ENDPOINT", "--fcm-endpoint", "FCM base URL; sends go to {this}/v1/projects/{project}/messages:send", ours=True)
    fcm_token_uri: str = _opt("https://oauth2.googleapis.com/token", "OBSCURA_FCM_TOKEN_URI", "--fcm-token-uri", "OAuth2 token endpoint of the service account (also the JWT audience)", ours=True)
    apns_key_file: str | None = _opt(None, "OBSCURA_APNS_KEY_FILE", "--apns-key-file", "APNs .p8 signing key; APNs is on when this, key id, team id and topic are all set", ours=True)
    apns_key_id: str | None = _opt(None, "OBSCURA_APNS_KEY_ID", "--apns-key-id", "APNs signing key id (JWT kid)", ours=True)
    apns_team_id: str | None = _opt(None, "OBSCURA_APNS_TEAM_ID", "--apns-team-id", "Apple developer team id (JWT iss)", ours=True)
    apns_topic: str | None = _opt(None, "OBSCURA_APNS_TOPIC", "--apns-topic", "iOS app bundle id (apns-topic)", ours=True)
    apns_environment: str = _opt("production", "OBSCURA_APNS_ENVIRONMENT", "--apns-environment", "production or sandbox: which Apple host to use", choices=("production", "sandbox"), ours=True)
    apns_endpoint: str | None = _opt(None, "OBSCURA_APNS_ENDPOINT", "--apns-endpoint", "APNs base URL; unset = Apple's host for the environment", ours=True)
    push_request_timeout_secs: int = _opt(10, "OBSCURA_PUSH_REQUEST_TIMEOUT_SECS", "--push-request-timeout-secs", "timeout of each push provider HTTP call", min=1, ours=True)
    # -- telemetry ------------------------------------------------------------------------------
    telemetry_otlp_endpoint: str | None = _opt(None, "OBSCURA_TELEMETRY_OTLP_ENDPOINT", "--telemetry-otlp-endpoint", "OTLP endpoint; unset = logs only")
    telemetry_log_format: str = _opt("text", "OBSCURA_TELEMETRY_LOG_FORMAT", "--telemetry-log-format", "text or json", choices=("text", "json"))
    telemetry_log_level: str = _opt("info", "OBSCURA_TELEMETRY_LOG_LEVEL", "--telemetry-log-level", "debug, info, warning or error", choices=("debug", "info", "warning", "error"), ours=True)
    telemetry_trace_sampling_ratio: float = _opt(1.0, "OBSCURA_TELEMETRY_TRACE_SAMPLING_RATIO", "--telemetry-trace-sampling-ratio", "ParentBased(TraceIdRatio)", min=0.0, max=1.0)
    telemetry_metrics_export_interval_secs: int = _opt(60, "OBSCURA_TELEMETRY_METRICS_EXPORT_INTERVAL_SECS", "--telemetry-metrics-export-interval-secs", "OTLP metric push period", min=1)
    telemetry_export_timeout_secs: int = _opt(10, "OBSCURA_TELEMETRY_EXPORT_TIMEOUT_SECS", "--telemetry-export-timeout-secs", "OTLP export timeout", min=1)
    telemetry_otlp_protocol: str = _opt("grpc", "OBSCURA_TELEMETRY_OTLP_PROTOCOL", "--telemetry-otlp-protocol", "OTLP transport: grpc or http/protobuf", choices=("grpc", "http/protobuf"), ours=True)
    telemetry_prometheus_enabled: bool = _opt(False, "OBSCURA_TELEMETRY_PROMETHEUS_ENABLED", "--telemetry-prometheus-enabled", "serve Prometheus text at /metrics on the management port", ours=True)
    telemetry_state_poll_interval_secs: int = _opt(300, "OBSCURA_TELEMETRY_STATE_POLL_INTERVAL_SECS", "--telemetry-state-poll-interval-secs", "period of the users/devices/pending-messages gauges", min=1, ours=True)

    # -- derived --------------------------------------------------------------------------------
    @property
    def embedded_database(self) -> bool:
        return not self.db_url

    @property
    def storage_kind(self) -> str:
        """The blob backend actually used: ``auto`` resolved to ``s3`` or ``local``."""
        if self.storage_backend != "auto":
            return self.storage_backend
        if self.storage_endpoint or (self.storage_access_key and self.storage_secret_key):
            return "s3"
        return "local"

    @property
    def blob_dir(self) -> str:
        return self.storage_local_path or os.path.join(self.data_dir, "blobs")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some options changed, validated like any other load."""
        new = dataclasses.replace(self, **changes)
        _validate(new)
        return new


OPTIONS: tuple[dataclasses.Field, ...] = tuple(dataclasses.fields(Settings))
_BY_ENV = {f.metadata["env"]: f for f in OPTIONS}


def _type_of(f: dataclasses.Field) -> str:
    if f.metadata["kind"]:
        return f.metadata["kind"]
    t = f.type if isinstance(f.type, str) else f.type.__name__
    return t.split(" |")[0]


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_cidrs(text: str | Sequence[str]) -> tuple:
    items = text.split(",") if isinstance(text, str) else list(text)
    nets = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        nets.append(item if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                    else ipaddress.ip_network(item, strict=False))
    return tuple(nets)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: int(str(v).strip(), 10),
    "float": lambda v: float(str(v).strip()),
    "bool": lambda v: v if isinstance(v, bool) else _parse_bool(str(v)),
    "str": lambda v: str(v),
    "cidrs": _parse_cidrs,
}


def _convert(f: dataclasses.Field, raw: Any, source: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str) and raw == "" and "None" in str(f.type):
        return None  # an empty optional value means "unset"
    try:
        return _PARSERS[_type_of(f)](raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{f.metadata['env']} ({f.metadata['flag']}): invalid value {_shown(f, raw)!s} "
                          f"from {source}: {exc}") from None


def _shown(f: dataclasses.Field, value: Any) -> str:
    return "'***'" if f.metadata["secret"] else repr(value)


def _validate(s: Settings) -> None:
    for f in OPTIONS:
        value = getattr(s, f.name)
        name = f"{f.metadata['env']} ({f.metadata['flag']})"
        if value is None:
            continue
        lo, hi = f.metadata["min"], f.metadata["max"]
        if lo is not None and value < lo:
            raise ConfigError(f"{name} must be at least {lo}, got {_shown(f, value)}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name} must be at most {hi}, got {_shown(f, value)}")
        if f.metadata["choices"] and value not in f.metadata["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(f.metadata['choices'])}, got {value!r}")
    if s.db_min_connections > s.db_max_connections:
        raise ConfigError("OBSCURA_DATABASE_MIN_CONNECTIONS (--db-min-connections) must not exceed "
                          "OBSCURA_DATABASE_MAX_CONNECTIONS (--db-max-connections)")
    if s.pubsub_min_backoff_secs > s.pubsub_max_backoff_secs:
        raise ConfigError("OBSCURA_PUBSUB_MIN_BACKOFF_SECS (--pubsub-min-backoff-secs) must not exceed "
                          "OBSCURA_PUBSUB_MAX_BACKOFF_SECS (--pubsub-max-backoff-secs)")
    if s.attachment_min_size_bytes > s.attachment_max_size_bytes:
        raise ConfigError("OBSCURA_ATTACHMENT_MIN_SIZE_BYTES must not exceed OBSCURA_ATTACHMENT_MAX_SIZE_BYTES")
    if s.backup_min_size_bytes > s.backup_max_size_bytes:
        raise ConfigError("OBSCURA_BACKUP_MIN_SIZE_BYTES must not exceed OBSCURA_BACKUP_MAX_SIZE_BYTES")
    if s.db_url is not None and not s.db_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("OBSCURA_DATABASE_URL (--db-url) must be a postgres:// or postgresql:// URL")
    if s.pubsub_url is not None and not s.pubsub_url.startswith(("redis://", "rediss://", "unix://", "valkey://")):
        raise ConfigError("OBSCURA_PUBSUB_URL (--pubsub-url) must be a redis://, rediss:// or unix:// URL")
    if s.storage_kind == "s3" and not s.storage_bucket:
        raise ConfigError("OBSCURA_STORAGE_BUCKET (--storage-bucket) must be set for the s3 backend")
    _validate_push(s)


def _validate_push(s: Settings) -> None:
    for name in ("fcm_endpoint", "fcm_token_uri", "apns_endpoint"):
        value = getattr(s, name)
        if value is not None and not value.startswith(("https://", "http://")):
            f = _field(name)
            raise ConfigError(f"{f.metadata['env']} ({f.metadata['flag']}) must be an http:// or https:// URL")
    apns = ("apns_key_file", "apns_key_id", "apns_team_id", "apns_topic")
    given = [n for n in apns if getattr(s, n)]
    if given and len(given) != len(apns):
        missing = ", ".join(_field(n).metadata["env"] for n in apns if n not in given)
        raise ConfigError(f"APNs is half configured: also set {missing}")


def load_settings(cli: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Build Settings from defaults, then ``environ`` (OBSCURA_* names), then ``cli`` values.

    ``cli`` maps field names to raw values as argparse gives them (None = flag not given);
    ``overrides`` are typed values for tests and embedding.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in OPTIONS:
        env = f.metadata["env"]
        if env in environ:
            values[f.name] = _convert(f, environ[env], "the environment")
    for name, raw in (cli or {}).items():
        if raw is None:
            continue
        values[name] = _convert(_field(name), raw, "the command line")
    for name, value in overrides.items():
        f = _field(name)
        values[name] = _convert(f, value, "code") if f.metadata["kind"] == "cidrs" else value
    if "server_trusted_proxies" not in values:
        values["server_trusted_proxies"] = _parse_cidrs(_PRIVATE_NETS)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _field(name: str) -> dataclasses.Field:
    for f in OPTIONS:
        if f.name == name:
            return f
    raise ConfigError(f"unknown option {name!r}")


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per option; values are parsed and validated by load_settings."""
    for f in OPTIONS:
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if _type_of(f) == "bool" else {}
        parser.add_argument(f.metadata["flag"], dest=f.name, default=None, metavar=_type_of(f).upper(),
                            help=f"{f.metadata['help']} [env {f.metadata['env']}]", **extra)


def redacted_items(settings: Settings) -> list[tuple[str, str]]:
    """(env name, shown value) for every option, secrets replaced by ``***``."""
    rows = []
    for f in OPTIONS:
        value = getattr(settings, f.name)
        if value is None:
            shown = ""
        elif f.metadata["secret"]:
            shown = _redact(f.name, value)
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = str(value)
        rows.append((f.metadata["env"], shown))
    return rows


def _redact(name: str, value: str) -> str:
    if name.endswith("_url") and "://" in value:
        # keep scheme, host and path for diagnostics; hide user info (password) only
        scheme, rest = value.split("://", 1)
        if "@" in rest:
            userinfo, hostpart = rest.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else f"{scheme}://{user}@{hostpart}"
        return value
    return "***"
