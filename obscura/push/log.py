"""The logging provider: what a node with no push service configured does (spec §6.3, decisions §5)."""

from __future__ import annotations

import logging

from obscura.push.base import PushProvider, PushResult, PushTarget

__all__ = ["LoggingPushProvider"]

log = logging.getLogger("obscura.push")


class LoggingPushProvider(PushProvider):
    """Logs the device id (never the token) and succeeds, so jobs are consumed, as upstream."""

    name = "log"

    async def send(self, target: PushTarget) -> PushResult:
        log.info("push not configured; would wake device %s (%s)", target.device_id, target.token_type)
        return PushResult.SUCCESS
