"""GET /openapi.yaml: our own OpenAPI document with the running version substituted (spec §2.14)."""

from __future__ import annotations

from importlib import resources

from obscura import __version__
from obscura.http.response import Response
from obscura.http.router import Router

__all__ = ["add_docs_routes", "openapi_document"]


def openapi_document() -> bytes:
    text = resources.files("obscura").joinpath("openapi.yaml").read_text("utf-8")
    return text.replace("version: 0.0.0", f"version: {__version__}", 1).encode()


def add_docs_routes(router: Router) -> None:
    body = openapi_document()

    async def openapi(request) -> Response:
        return Response(200, body, content_type="text/yaml")

    router.add("GET", "/openapi.yaml", openapi, name="openapi")
