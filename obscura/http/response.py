"""Responses (whole or streamed), JSON and error helpers, and the bytes of a response head."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import orjson

from obscura.errors import ObscuraError

__all__ = ["Response", "StreamResponse", "json_response", "error_response", "JSON_TYPE"]

JSON_TYPE = "application/json"

_REASONS = {s.value: s.phrase for s in HTTPStatus}

HeaderList = list[tuple[str, str]]


class Response:
    """A response whose body is in memory. No content type + empty body = no Content-Type (spec §2.1)."""

    __slots__ = ("status", "body", "headers", "content_type")

    def __init__(self, status: int = 200, body: bytes = b"", headers: Iterable[tuple[str, str]] | None = None,
                 content_type: str | None = None) -> None:
        self.status = status
        self.body = body
        self.headers: HeaderList = list(headers) if headers else []
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamResponse:
    """A response whose body comes from an async iterator: Content-Length when known, else chunked."""

    __slots__ = ("status", "chunks", "content_length", "headers", "content_type")

    def __init__(self, status: int, chunks: AsyncIterable[bytes], content_length: int | None = None,
                 headers: Iterable[tuple[str, str]] | None = None, content_type: str | None = None) -> None:
        self.status = status
        self.chunks = chunks
        self.content_length = content_length
        self.headers: HeaderList = list(headers) if headers else []
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<StreamResponse {self.status} length={self.content_length}>"


def json_response(obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] | None = None) -> Response:
    """``obj`` serialised with orjson as ``application/json``."""
    return Response(status, orjson.dumps(obj), headers, JSON_TYPE)


def error_response(err: ObscuraError) -> Response:
    """The one rendering of an error: JSON ``{"error": message}`` plus the error's headers (decisions §4.1)."""
    return Response(err.status, orjson.dumps({"error": err.message}), err.headers, JSON_TYPE)


# -- wire encoding ------------------------------------------------------------------------------

_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The Date header value, formatted at most once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


def _check(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("response header contains CR or LF")  # header injection: a bug, so a 500
    return value


# Framing and identity headers are written by the server only; a handler's copy is dropped.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "x-request-id", "date"})


def encode_head(status: int, headers: HeaderList, content_type: str | None, content_length: int | None,
                request_id: str, keep_alive: bool, chunked: bool = False) -> bytes:
    """Status line and headers, ending with the blank line. Body framing headers are ours alone."""
    parts = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nDate: {http_date()}\r\n"]
    if content_type is not None:
        parts.append(f"Content-Type: {_check(content_type)}\r\n")
    if content_length is not None:
        parts.append(f"Content-Length: {content_length}\r\n")
    elif chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    for name, value in headers:
        if name.lower() not in _OWN_HEADERS:
            parts.append(f"{_check(name)}: {_check(value)}\r\n")
    parts.append(f"X-Request-ID: {request_id}\r\n")
    if not keep_alive:
        parts.append("Connection: close\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def body_allowed(status: int) -> bool:
    """1xx, 204 and 304 responses never carry a body or Content-Length (RFC 9110 §8.6)."""
    return not (status < 200 or status == 204 or status == 304)
