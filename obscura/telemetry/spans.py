"""Spans: the handle and its no-op, the front door's request spans and RED metrics, traced service
calls and database statements as child spans (spec §8.2, issue 7). Nothing here imports
OpenTelemetry: a span comes from the node's Pipeline, which exists only while tracing is on.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from obscura.logs import request_id_var

if TYPE_CHECKING:
    from obscura.telemetry import Telemetry
    from obscura.telemetry.pipeline import Pipeline

__all__ = ["SpanHandle", "NoopSpan", "NOOP_SPAN", "HttpObserver", "traced", "no_children", "record_query"]


class NoopSpan:
    """What ``span()`` returns with tracing off: a shared object, no allocation per call."""

    __slots__ = ()

    def __enter__(self) -> NoopSpan:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass

    def end(self) -> None:
        pass


NOOP_SPAN = NoopSpan()


def _record_exception(span: Any, exc: BaseException, pipeline: Any) -> None:
    """OTel exception semantics without the message: it may carry a value we must not export (issue 7 §5)."""
    stack = "".join(traceback.format_tb(exc.__traceback__)) + type(exc).__qualname__
    span.record_exception(exc, attributes={"exception.message": type(exc).__name__,
                                           "exception.stacktrace": stack})
    span.set_status(pipeline.error_status)


class SpanHandle:
    """A live span; as a context manager it is current for the block (logs get its ids)."""

    __slots__ = ("_span", "_p", "_token")

    def __init__(self, span: Any, pipeline: Any) -> None:
        self._span, self._p, self._token = span, pipeline, None

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def record_exception(self, exc: BaseException) -> None:
        _record_exception(self._span, exc, self._p)

    def end(self) -> None:
        self._span.end()

    def __enter__(self) -> SpanHandle:
        self._token = self._p.attach(self._span)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if isinstance(exc, Exception) and getattr(exc, "status", 500) >= 500:
                self.record_exception(exc)  # a client error (4xx ObscuraError) is not a failed span
        finally:
            self._p.detach(self._token)
            self._span.end()
        return False


# -- the front door's hook -----------------------------------------------------------------------
class _HeaderGetter:
    """Lets the W3C propagator read our Headers (names already lower-case); duck-types OTel's Getter."""

    __slots__ = ()

    @staticmethod
    def get(carrier: Any, key: str) -> list[str] | None:
        return carrier.getall(key) or None

    @staticmethod
    def keys(carrier: Any) -> list[str]:
        return [k for k, _ in carrier]


_GETTER = _HeaderGetter()


class HttpObserver:
    """RED metrics and one SERVER span per request, called by obscura/http/exchange.py.

    Labels and attributes carry the route template, never the raw path (issue 7 §2), and ids only:
    no address, user agent, header or body (issue 7 §5).
    """

    __slots__ = ("_p", "_requests", "_duration")

    def __init__(self, telemetry: Telemetry, pipeline: Pipeline) -> None:
        self._p = pipeline
        self._requests = telemetry.counter("http_server_requests_total", "HTTP requests served")
        self._duration = telemetry.histogram("http_server_request_duration_seconds", "HTTP request duration", "s")

    def on_request_start(self, req: Any) -> tuple[float, Any, Any, Any]:
        rid_token = request_id_var.set(req.request_id)
        p = self._p
        if p.tracer is None:
            return time.perf_counter(), None, None, rid_token
        # spec §8.2: W3C TraceContext; ParentBased sampling follows the caller's decision.
        parent = p.extract(req.headers, getter=_GETTER) if "traceparent" in req.headers else None
        span = p.tracer.start_span("request", context=parent, kind=p.server_kind, attributes={
            "http.request.method": req.method, "url.path": req.route or "unmatched",
            "http.route": req.route or "unmatched", "request.id": req.request_id})
        return time.perf_counter(), span, p.attach(span, parent), rid_token

    def outside_request(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn`` in a copy of the current context without the request's span: what it starts
        (a WebSocket session after the upgrade) outlives the request and must not nest under it.
        The request id stays (log lines keep it)."""
        return contextvars.copy_context().run(self._outside, fn, args)

    def _outside(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        self._p.attach_root()
        return fn(*args)

    def on_exception(self, req: Any, exc: BaseException) -> None:
        """An unexpected handler failure (the client sees a generic 500)."""
        span = self._p.current_span()
        if span.is_recording():
            _record_exception(span, exc, self._p)

    def on_request_end(self, req: Any, state: tuple[float, Any, Any, Any], status: int) -> None:
        started, span, token, rid_token = state
        elapsed_s = time.perf_counter() - started
        route = req.route or "unmatched"
        self._requests.add(1, {"method": req.method, "route": route, "status": str(status)})
        self._duration.record(elapsed_s, {"method": req.method, "route": route})
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            claims = req.state.get("claims")
            if claims is not None:  # set by obscura.api.common.Authenticator
                span.set_attribute("user.id", str(claims.user_id))
                if claims.device_id is not None:
                    span.set_attribute("device.id", str(claims.device_id))
            if status >= 500:
                span.set_status(self._p.error_status)
            span.end()
            self._p.detach(token)
        request_id_var.reset(rid_token)


# -- child spans -----------------------------------------------------------------------------------
no_children: contextvars.ContextVar[bool] = contextvars.ContextVar("obscura_no_child_spans", default=False)


def traced(name: str) -> Callable[[Callable[..., Coroutine[Any, Any, Any]]], Callable[..., Any]]:
    """Decorate a service's coroutine method (the service keeps its Telemetry in ``_telemetry``):
    a child span ``name`` around each call inside a sampled trace, a direct call otherwise."""
    def decorate(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(self: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
            span = self._telemetry.child_span(name)
            if span is NOOP_SPAN:
                return fn(self, *args, **kwargs)  # no extra coroutine frame
            return _in_span(span, fn(self, *args, **kwargs))
        return call
    return decorate


async def _in_span(span: SpanHandle, coro: Coroutine[Any, Any, Any]) -> Any:
    with span:  # current for the call: its database spans nest under it
        return await coro


_SQL_OP = re.compile(r"\s*(\w+)")
_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)", re.IGNORECASE)
# A statement with CTEs is named after the data-modifying statement inside it, if any.
_SQL_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)
_query_names: dict[str, tuple[str, dict[str, str]]] = {}


def _query_span_meta(sql: str) -> tuple[str, dict[str, str]]:
    """``("INSERT messages", attributes)`` per the database semantic conventions; cached per text
    (the statements are our own constants, so the cache stays small; it is capped anyway)."""
    meta = _query_names.get(sql)
    if meta is None:
        op_match = _SQL_OP.match(sql)
        operation = op_match.group(1).upper() if op_match else "QUERY"
        table = _SQL_TABLE.search(sql)
        collection = table.group(1).lower() if table is not None else None
        if operation == "WITH":
            write = _SQL_WRITE.search(sql)
            if write is not None:
                operation, collection = write.group(1).split()[0].upper(), write.group(2).lower()
        attrs = {"db.system.name": "postgresql", "db.operation.name": operation, "db.query.text": sql[:2048]}
        name = operation
        if collection is not None:
            attrs["db.collection.name"] = collection
            name = f"{operation} {collection}"
        meta = (name, attrs)
        if len(_query_names) < 512:
            _query_names[sql] = meta
    return meta


def record_query(p: Pipeline, record: Any) -> None:
    if no_children.get() or not p.current_span().get_span_context().trace_flags.sampled:
        return
    name, attrs = _query_span_meta(record.query)
    end_ns = time.time_ns()
    span = p.tracer.start_span(name, kind=p.client_kind, attributes=attrs,
                               start_time=end_ns - int(record.elapsed * 1e9))
    if record.exception is not None:
        span.set_attribute("error.type", type(record.exception).__qualname__)
        span.set_status(p.error_status)
    span.end(end_time=end_ns)
