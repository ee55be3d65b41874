"""Picks the provider for each token by its type (issue 6: APNs tokens go to APNs when configured)."""

from __future__ import annotations

from obscura.push.base import PushProvider, PushResult, PushTarget
from obscura.push.log import LoggingPushProvider

__all__ = ["RoutingPushProvider"]


class RoutingPushProvider(PushProvider):
    """``apns`` tokens: APNs, else FCM (which can reach iOS too), else the log; ``fcm``: FCM, else the log."""

    name = "router"

    def __init__(self, *, fcm: PushProvider | None = None, apns: PushProvider | None = None,
                 fallback: PushProvider | None = None) -> None:
        self.fcm = fcm
        self.apns = apns
        self.fallback = fallback or LoggingPushProvider()

    def provider_for(self, token_type: str) -> PushProvider:
        if token_type == "apns" and self.apns is not None:
            return self.apns
        return self.fcm if self.fcm is not None else self.fallback

    async def send(self, target: PushTarget) -> PushResult:
        return await self.provider_for(target.token_type).send(target)

    async def close(self) -> None:
        for provider in (self.fcm, self.apns, self.fallback):
            if provider is not None:
                await provider.close()
