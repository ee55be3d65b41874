"""The rate-limit hook: auth and standard tiers per client IP, 429 as JSON (spec §6.7, decisions §4.1)."""

from __future__ import annotations

from obscura.config import Settings
from obscura.errors import TooManyRequests
from obscura.http.request import Request
from obscura.http.response import Response, error_response
from obscura.services.ratelimit import GcraLimiter, client_ip
from obscura.telemetry import Telemetry

__all__ = ["RateLimitHook", "AUTH", "STANDARD"]

AUTH = {"tier": "auth"}
STANDARD = {"tier": "standard"}
_GATEWAY_PATH = "/v1/gateway"


class RateLimitHook:
    """Runs before every handler; routes say their tier through ``meta`` (untiered routes pass)."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self._limiters = {
            "auth": GcraLimiter(settings.rate_limit_auth_per_second, settings.rate_limit_auth_burst),
            "standard": GcraLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        }
        self._trusted = settings.server_trusted_proxies
        self._decisions = telemetry.counter("obscura_rate_limit_decisions_total", "rate-limit decisions")

    def limiter(self, tier: str) -> GcraLimiter:
        return self._limiters[tier]

    async def __call__(self, request: Request) -> Response | None:
        endpoint = request.endpoint
        tier = endpoint.meta.get("tier") if endpoint is not None and endpoint.meta else None
        if tier is None and request.path == _GATEWAY_PATH:
            tier = "standard"  # the WebSocket handshake counts as a standard request (spec §3.2)
        if tier is None:
            return None
        key = client_ip(request.client_host or "", request.headers.get("x-forwarded-for"), self._trusted)
        wait_s = self._limiters[tier].check(key)
        if wait_s is None:
            self._decisions.add(1, {"status": "allowed"})
            return None
        self._decisions.add(1, {"status": "throttled"})
        after = str(GcraLimiter.retry_after_secs(wait_s))
        return error_response(TooManyRequests(f"Too Many Requests! Wait for {after}s",
                                              headers=[("x-ratelimit-after", after), ("retry-after", after)]))
