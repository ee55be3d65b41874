"""One error tree: each error carries a stable code, an HTTP status and a WebSocket close code."""

from __future__ import annotations

__all__ = [
    "ObscuraError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed",
    "RequestTimeout", "Conflict", "LengthRequired", "PreconditionFailed", "PayloadTooLarge",
    "UnsupportedMediaType", "UnprocessableEntity", "HeadersTooLarge", "TooManyRequests",
    "InternalError", "ServiceUnavailable", "error_for_status",
]


class ObscuraError(Exception):
    """Base of every error that reaches a client. ``message`` is safe to show; nothing else is."""

    status: int = 500
    code: str = "internal"
    default_message: str = "Internal server error"
    ws_close_code: int = 1011

    def __init__(self, message: str | None = None, *, headers: list[tuple[str, str]] | None = None) -> None:
        self.message = message if message is not None else self.default_message
        self.headers = headers or []
        super().__init__(self.message)


class BadRequest(ObscuraError):
    status, code, default_message, ws_close_code = 400, "bad_request", "Bad request", 1008


class Unauthorized(ObscuraError):
    status, code, default_message, ws_close_code = 401, "unauthorized", "Unauthorized", 1008


class Forbidden(ObscuraError):
    status, code, default_message, ws_close_code = 403, "forbidden", "Forbidden", 1008


class NotFound(ObscuraError):
    status, code, default_message, ws_close_code = 404, "not_found", "Not found", 1008


class MethodNotAllowed(ObscuraError):
    status, code, default_message, ws_close_code = 405, "method_not_allowed", "Method not allowed", 1008


class RequestTimeout(ObscuraError):
    status, code, default_message, ws_close_code = 408, "timeout", "Request timeout", 1011


class Conflict(ObscuraError):
    status, code, default_message, ws_close_code = 409, "conflict", "Conflict", 1008


class LengthRequired(ObscuraError):
    status, code, default_message, ws_close_code = 411, "length_required", "Length required", 1008


class PreconditionFailed(ObscuraError):
    status, code, default_message, ws_close_code = 412, "precondition_failed", "Precondition failed", 1008


class PayloadTooLarge(ObscuraError):
    status, code, default_message, ws_close_code = 413, "payload_too_large", "Payload too large", 1009


class UnsupportedMediaType(ObscuraError):
    status, code = 415, "unsupported_media_type"
    default_message = "Expected request with `Content-Type: application/json`"
    ws_close_code = 1003


class UnprocessableEntity(ObscuraError):
    status, code, default_message, ws_close_code = 422, "unprocessable", "Unprocessable entity", 1007


class HeadersTooLarge(ObscuraError):
    status, code, default_message, ws_close_code = 431, "headers_too_large", "Request header fields too large", 1009


class TooManyRequests(ObscuraError):
    status, code, default_message, ws_close_code = 429, "rate_limited", "Too many requests", 1008


class InternalError(ObscuraError):
    status, code, default_message, ws_close_code = 500, "internal", "Internal server error", 1011


class ServiceUnavailable(ObscuraError):
    status, code, default_message, ws_close_code = 503, "unavailable", "Service unavailable", 1013


_BY_STATUS = {cls.status: cls for cls in ObscuraError.__subclasses__()}


def error_for_status(status: int, message: str | None = None) -> ObscuraError:
    """The error class registered for an HTTP status (500 for unknown ones)."""
    return _BY_STATUS.get(status, InternalError)(message)
