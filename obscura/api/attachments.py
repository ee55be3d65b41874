"""REST routes for attachments: streamed upload and conditional download (spec §2.13, §6.1)."""

from __future__ import annotations

from obscura.api.common import Authenticator, path_uuid
from obscura.http.request import Request
from obscura.http.response import Response, StreamResponse, json_response
from obscura.http.router import Router
from obscura.services.attachments import AttachmentService, etag_matches

__all__ = ["add_attachment_routes"]

OCTET_STREAM = "application/octet-stream"


def add_attachment_routes(router: Router, service: AttachmentService, auth: Authenticator, *,
                          timeout_s: float) -> None:
    """Any token scope, no rate limit, their own timeout instead of the request timeout (spec §2.1)."""

    async def upload(request: Request) -> Response:
        await auth(request)
        # 411 before the size checks and before reading any byte (spec §6.1).
        length = request.require_content_length()
        done = await service.upload(request.stream(), length)
        return json_response({"id": str(done.attachment_id), "expiresAt": done.expires_at_unix}, 201)

    async def download(request: Request) -> Response | StreamResponse:
        await auth(request)
        attachment_id = path_uuid(request, "id")
        etag = f'"{attachment_id}"'
        # 304 on a matching tag without checking that the attachment exists, like upstream.
        if etag_matches(request.headers.get("if-none-match"), str(attachment_id)):
            return Response(304, headers=[("ETag", etag)])
        blob = await service.open(attachment_id)
        return StreamResponse(200, blob, content_length=blob.size, headers=[("ETag", etag)],
                              content_type=OCTET_STREAM)

    router.add("POST", "/v1/attachments", upload, name="attachments.upload", timeout_s=timeout_s,
               stream_body=True)
    router.add("GET", "/v1/attachments/{id}", download, name="attachments.download", timeout_s=timeout_s)
