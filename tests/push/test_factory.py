"""Which provider wakes which token (issue 6 §4, §5) and how settings build them (spec §7)."""

from __future__ import annotations

import uuid

import pytest

from obscura.config import ConfigError, load_settings
from obscura.push.apns import ApnsProvider
from obscura.push.base import PushResult, PushTarget
from obscura.push.factory import make_push_provider
from obscura.push.fcm import FcmProvider
from obscura.push.log import LoggingPushProvider


def _apns_options(apns_key, **extra):
    options = dict(apns_key_file=str(apns_key[0]), apns_key_id="K", apns_team_id="T", apns_topic="org.x")
    options.update(extra)
    return options


async def test_nothing_configured_logs_everything():
    provider = make_push_provider(load_settings(environ={}))
    try:
        assert provider.fcm is None and provider.apns is None
        assert isinstance(provider.provider_for("apns"), LoggingPushProvider)
        assert await provider.send(PushTarget(uuid.uuid4(), "t", "apns")) is PushResult.SUCCESS
    finally:
        await provider.close()


async def test_fcm_needs_both_project_and_credentials(service_account):
    provider = make_push_provider(load_settings(environ={}, fcm_project_id="p"))
    assert provider.fcm is None
    provider = make_push_provider(load_settings(environ={}, fcm_project_id="p",
                                                fcm_credentials_file=str(service_account.path)))
    try:
        assert isinstance(provider.fcm, FcmProvider)
        # Without APNs an iOS token still goes through FCM, which can reach APNs itself.
        assert provider.provider_for("apns") is provider.fcm and provider.provider_for("fcm") is provider.fcm
    finally:
        await provider.close()


@pytest.mark.parametrize(("environment", "host"), [("production", "https://api.push.apple.com"),
                                                   ("sandbox", "https://api.sandbox.push.apple.com")])
async def test_apns_tokens_go_to_apns_when_configured(apns_key, service_account, environment, host):
    provider = make_push_provider(load_settings(
        environ={}, fcm_project_id="p", fcm_credentials_file=str(service_account.path),
        **_apns_options(apns_key, apns_environment=environment)))
    try:
        assert isinstance(provider.apns, ApnsProvider)
        assert provider.provider_for("apns") is provider.apns and provider.provider_for("fcm") is provider.fcm
        assert provider.apns._base == f"{host}/3/device/"
    finally:
        await provider.close()


async def test_apns_only_sends_fcm_tokens_to_the_log(apns_key):
    provider = make_push_provider(load_settings(environ={}, **_apns_options(apns_key,
                                                                            apns_endpoint="http://127.0.0.1:1/")))
    try:
        assert provider.apns._base == "http://127.0.0.1:1/3/device/"
        assert isinstance(provider.provider_for("fcm"), LoggingPushProvider)
    finally:
        await provider.close()


def test_config_validation(apns_key):
    with pytest.raises(ConfigError, match="OBSCURA_APNS_KEY_ID.*OBSCURA_APNS_TEAM_ID"):
        load_settings(environ={"OBSCURA_APNS_KEY_FILE": str(apns_key[0]), "OBSCURA_APNS_TOPIC": "org.x"})
    with pytest.raises(ConfigError, match="OBSCURA_APNS_ENVIRONMENT"):
        load_settings(environ={"OBSCURA_APNS_ENVIRONMENT": "staging"})
    for env in ("OBSCURA_FCM_ENDPOINT", "OBSCURA_FCM_TOKEN_URI", "OBSCURA_APNS_ENDPOINT"):
        with pytest.raises(ConfigError, match=env):
            load_settings(environ={env: "fcm.googleapis.com"})
    with pytest.raises(ConfigError, match="OBSCURA_PUSH_REQUEST_TIMEOUT_SECS"):
        load_settings(environ={"OBSCURA_PUSH_REQUEST_TIMEOUT_SECS": "0"})


def test_unreadable_files_fail_at_start(tmp_path, service_account):
    with pytest.raises(FileNotFoundError):
        make_push_provider(load_settings(environ={}, fcm_project_id="p",
                                         fcm_credentials_file=str(tmp_path / "missing.json")))
    bad = tmp_path / "bad.p8"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match="bad.p8"):
        make_push_provider(load_settings(environ={}, apns_key_file=str(bad), apns_key_id="K",
                                         apns_team_id="T", apns_topic="t"))
