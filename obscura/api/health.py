"""Management routes: /livez and /readyz (spec §2.15)."""

from __future__ import annotations

from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.health import HealthService

__all__ = ["add_management_routes"]


def add_management_routes(router: Router, health: HealthService) -> None:
    async def livez(request) -> Response:
        return Response(200)

    async def readyz(request) -> Response:
        report = await health.readiness()
        return json_response(report.as_json(), status=200 if report.ok else 503)

    router.add("GET", "/livez", livez, name="livez")
    router.add("GET", "/readyz", readyz, name="readyz")
