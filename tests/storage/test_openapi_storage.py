"""The OpenAPI document covers every attachment and backup route the node registers."""

from __future__ import annotations

import pytest
import yaml

from obscura.api.docs import openapi_document


@pytest.fixture
def backend_kind() -> str:
    return "local"


def test_every_storage_route_is_documented(node):
    paths = yaml.safe_load(openapi_document())["paths"]
    routes = [(r.method, r.pattern) for r in node.app._r.main_server.router.routes]
    storage = [(m, p) for m, p in routes if p.startswith(("/v1/attachments", "/v1/backup"))]
    assert sorted(storage) == [("GET", "/v1/attachments/{id}"), ("GET", "/v1/backup"), ("HEAD", "/v1/backup"),
                               ("POST", "/v1/attachments"), ("POST", "/v1/backup")]
    for method, pattern in storage:
        assert method.lower() in paths[pattern], (method, pattern)
