"""REST routes for the device backup slot: GET, HEAD and conditional POST (spec §2.13, §6.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from obscura.api.common import Authenticator, require_device
from obscura.http.request import Request
from obscura.http.response import Response, StreamResponse
from obscura.http.router import Router
from obscura.services.backups import BackupService

__all__ = ["add_backup_routes"]

OCTET_STREAM = "application/octet-stream"


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def add_backup_routes(router: Router, service: BackupService, auth: Authenticator, *,
                      timeout_s: float) -> None:
    """Device-scoped, no rate limit, their own timeout instead of the request timeout (spec §2.1)."""

    async def upload(request: Request) -> Response:
        device_id = require_device(await auth(request))
        h = request.headers
        version = await service.upload(device_id, h.get("if-none-match"), h.get("if-match"),
                                       request.content_length, request.stream())
        return Response(200, headers=[("ETag", f'"{version}"')])

    async def download(request: Request) -> Response | StreamResponse:
        device_id = require_device(await auth(request))
        found = await service.fetch(device_id, request.headers.get("if-none-match"), body=True)
        etag = [("ETag", f'"{found.version}"')]
        if found.blob is None:
            return Response(304, headers=etag)
        return StreamResponse(200, found.blob, content_length=found.size, headers=etag, content_type=OCTET_STREAM)

    async def head(request: Request) -> StreamResponse:
        device_id = require_device(await auth(request))
        found = await service.fetch(device_id, None, body=False)
        # A stream with a known length and no body: the head carries the object's Content-Length.
        return StreamResponse(200, _no_body(), content_length=found.size,
                              headers=[("ETag", f'"{found.version}"')], content_type=OCTET_STREAM)

    router.add("GET", "/v1/backup", download, name="backup.download", timeout_s=timeout_s)
    router.add("HEAD", "/v1/backup", head, name="backup.head", timeout_s=timeout_s)
    router.add("POST", "/v1/backup", upload, name="backup.upload", timeout_s=timeout_s, stream_body=True)
