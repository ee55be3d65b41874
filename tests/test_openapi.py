"""openapi.yaml is a valid OpenAPI 3.1 document and documents every route the node serves."""

from __future__ import annotations

import yaml
from openapi_spec_validator import validate

from obscura.api.docs import openapi_document


def test_document_is_valid_openapi():
    validate(yaml.safe_load(openapi_document()))


async def test_every_route_is_documented(app):
    doc = yaml.safe_load(openapi_document())
    router = app._r.main_server.router
    served = {(route.method.lower(), route.pattern) for route in router.routes}
    served.add(("get", "/v1/gateway"))  # the upgrade, handed to picows
    documented = {(method, path) for path, item in doc["paths"].items() for method in item
                  if method in ("get", "post", "put", "delete", "head", "patch")}
    missing = sorted(served - documented - {("head", p) for _, p in served})
    assert not missing, f"routes missing from openapi.yaml: {missing}"
    stale = sorted(documented - served - {("head", "/v1/backup")})
    assert not stale, f"documented but not served: {stale}"
