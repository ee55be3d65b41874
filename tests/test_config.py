"""Config: defaults, env names, CLI precedence, validation messages, redaction (spec §7)."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys

import pytest

from obscura import cli
from obscura.config import OPTIONS, ConfigError, load_settings, redacted_items

# The rows of the upstream wire contract's configuration table (spec §7), kept beside the tests.
SPEC_TABLE = "data/upstream_config_table.md"


def _spec_rows():
    import pathlib
    text = (pathlib.Path(__file__).resolve().parent / SPEC_TABLE).read_text()
    rows = []
    for line in text.splitlines():
        m = re.match(r"\| `(--[a-z0-9-]+)` \| `(OBSCURA_[A-Z0-9_]+)` \| (`[^`]*`|None) \|", line)
        if m:
            default = None if m.group(3) == "None" else m.group(3).strip("`")
            rows.append((m.group(1), m.group(2), default))
    return rows


SPEC_ROWS = _spec_rows()
BY_ENV = {f.metadata["env"]: f for f in OPTIONS}
# Where we deliberately differ (decisions.md §5): unset means embedded/in-process mode.
OUR_DEFAULTS = {"OBSCURA_DATABASE_URL": None, "OBSCURA_PUBSUB_URL": None}


def test_spec_table_was_read():
    assert len(SPEC_ROWS) >= 75


@pytest.mark.parametrize("flag,env,default", SPEC_ROWS, ids=[r[1] for r in SPEC_ROWS])
def test_every_spec_option_has_same_env_flag_and_default(flag, env, default):
    f = BY_ENV.get(env)
    assert f is not None, f"{env} missing from Settings"
    assert f.metadata["flag"] == flag
    value = getattr(load_settings(environ={}), f.name)
    expected = OUR_DEFAULTS.get(env, default)
    if env in OUR_DEFAULTS:
        assert value is None
    elif expected is None:
        assert value is None
    elif isinstance(value, bool):
        assert value == (expected == "true")
    elif isinstance(value, tuple):
        assert value == tuple(ipaddress.ip_network(x) for x in expected.split(","))
    elif isinstance(value, float):
        assert value == float(expected)
    else:
        assert str(value) == expected


def test_env_overrides_default_and_cli_overrides_env():
    env = {"OBSCURA_SERVER_PORT": "4000", "OBSCURA_TTL_DAYS": "7"}
    assert load_settings(environ=env).server_port == 4000
    s = load_settings(cli={"server_port": "5000"}, environ=env)
    assert s.server_port == 5000 and s.ttl_days == 7


def test_cli_flags_parse_through_argparse(monkeypatch):
    monkeypatch.setenv("OBSCURA_SERVER_PORT", "4000")
    monkeypatch.setenv("OBSCURA_STORAGE_FORCE_PATH_STYLE", "false")
    parser = cli._parser()
    args = parser.parse_args(["serve", "--server-port", "3001", "--storage-force-path-style",
                              "--trusted-proxies", "127.0.0.1/32,::1/128"])
    s = cli._settings(args)
    assert s.server_port == 3001
    assert s.storage_force_path_style is True
    assert s.server_trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize("env,value,fragment", [
    ("OBSCURA_SERVER_PORT", "abc", "OBSCURA_SERVER_PORT"),
    ("OBSCURA_SERVER_PORT", "70000", "at most 65535"),
    ("OBSCURA_TTL_DAYS", "0", "at least 1"),
    ("OBSCURA_STORAGE_FORCE_PATH_STYLE", "maybe", "OBSCURA_STORAGE_FORCE_PATH_STYLE"),
    ("OBSCURA_SERVER_TRUSTED_PROXIES", "10.0.0.0/33", "OBSCURA_SERVER_TRUSTED_PROXIES"),
    ("OBSCURA_TELEMETRY_LOG_FORMAT", "xml", "text, json"),
    ("OBSCURA_TELEMETRY_TRACE_SAMPLING_RATIO", "1.5", "at most 1.0"),
    ("OBSCURA_DATABASE_URL", "mysql://x", "OBSCURA_DATABASE_URL"),
    ("OBSCURA_STORAGE_BACKEND", "ftp", "OBSCURA_STORAGE_BACKEND"),
])
def test_invalid_values_name_the_option(env, value, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings(environ={env: value})
    assert env in str(err.value)
    assert fragment in str(err.value)


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="OBSCURA_DATABASE_MIN_CONNECTIONS"):
        load_settings(environ={"OBSCURA_DATABASE_MIN_CONNECTIONS": "30"})


def test_settings_are_frozen():
    s = load_settings(environ={})
    with pytest.raises(Exception):
        s.server_port = 1  # type: ignore[misc]


def test_storage_kind_resolution():
    assert load_settings(environ={}).storage_kind == "local"
    assert load_settings(environ={"OBSCURA_STORAGE_ENDPOINT": "http://127.0.0.1:9000"}).storage_kind == "s3"
    assert load_settings(environ={"OBSCURA_STORAGE_BACKEND": "memory"}).storage_kind == "memory"


def test_redaction_hides_every_secret():
    s = load_settings(environ={
        "OBSCURA_DATABASE_URL": "postgres://app:hunter2pass@db.internal:5432/obscura",
        "OBSCURA_PUBSUB_URL": "redis://:redispass@cache:6379/0",
        "OBSCURA_AUTH_JWT_SECRET": "supersecretjwtkey",
        "OBSCURA_STORAGE_ACCESS_KEY": "AKIAEXAMPLE",
        "OBSCURA_STORAGE_SECRET_KEY": "s3secretvalue",
    })
    shown = dict(redacted_items(s))
    text = "\n".join(shown.values())
    for secret in ("hunter2pass", "redispass", "supersecretjwtkey", "AKIAEXAMPLE", "s3secretvalue"):
        assert secret not in text
    assert shown["OBSCURA_DATABASE_URL"] == "postgres://app:***@db.internal:5432/obscura"
    assert shown["OBSCURA_AUTH_JWT_SECRET"] == "***"


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os
    full = {k: v for k, v in os.environ.items() if not k.startswith("OBSCURA_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "obscura", *args], capture_output=True, text=True, env=full, timeout=60)


def test_print_config_command_shows_effective_redacted_settings():
    res = _run_cli("print-config", "--server-port", "3001",
                   env={"OBSCURA_SERVER_PORT": "4000", "OBSCURA_AUTH_JWT_SECRET": "topsecretvalue"})
    assert res.returncode == 0, res.stderr
    lines = dict((line.split(None, 1) + [""])[:2] for line in res.stdout.splitlines())
    assert lines["OBSCURA_SERVER_PORT"].strip() == "3001"
    assert "topsecretvalue" not in res.stdout
    assert len(lines) == len(OPTIONS)


def test_serve_with_invalid_config_fails_at_startup_naming_the_option():
    res = _run_cli("serve", env={"OBSCURA_WS_ACK_BATCH_SIZE": "-5"})
    assert res.returncode == 2
    assert "OBSCURA_WS_ACK_BATCH_SIZE" in res.stderr


def test_readme_documents_every_option():
    import pathlib
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [f.metadata["env"] for f in OPTIONS if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
