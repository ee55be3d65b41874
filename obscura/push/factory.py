"""Builds the push provider from settings (spec §7 fcm_*, our apns_*); files are read and checked here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from obscura.push.router import RoutingPushProvider

if TYPE_CHECKING:
    from obscura.config import Settings

__all__ = ["make_push_provider"]

log = logging.getLogger("obscura.push")


def make_push_provider(settings: Settings) -> RoutingPushProvider:
    """FCM when its project and credentials file are both set (as upstream), APNs when its four
    options are set; neither means every push is only logged (the embedded default)."""
    s = settings
    fcm = apns = None
    if s.fcm_project_id and s.fcm_credentials_file:
        from obscura.push.fcm import FcmProvider, ServiceAccount

        fcm = FcmProvider(ServiceAccount.from_file(s.fcm_credentials_file), s.fcm_project_id, ttl_s=s.fcm_ttl_secs,
                          endpoint=s.fcm_endpoint, token_uri=s.fcm_token_uri, timeout_s=s.push_request_timeout_secs,
                          max_connections=s.notifications_worker_concurrency)
    if s.apns_key_file and s.apns_key_id and s.apns_team_id and s.apns_topic:
        from obscura.push.apns import APNS_HOSTS, ApnsProvider, load_signing_key

        with open(s.apns_key_file, "rb") as f:
            key = load_signing_key(f.read(), s.apns_key_file)
        apns = ApnsProvider(key, key_id=s.apns_key_id, team_id=s.apns_team_id, topic=s.apns_topic,
                            endpoint=s.apns_endpoint or APNS_HOSTS[s.apns_environment],
                            timeout_s=s.push_request_timeout_secs)
    log.info("push providers: fcm %s, apns %s", "on" if fcm else "off", "on" if apns else "off")
    return RoutingPushProvider(fcm=fcm, apns=apns)
