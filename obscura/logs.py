"""Logging setup: human text or one JSON object per line, with the current request id and trace ids."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextvars import ContextVar
from collections.abc import Callable
from types import TracebackType

import orjson

__all__ = ["request_id_var", "configure_logging", "JsonFormatter", "TextFormatter", "set_trace_context_source",
           "STANDARD_RECORD_ATTRS", "make_handler"]

#: The id of the request being served in this context (set by the front door), or None.
request_id_var: ContextVar[str | None] = ContextVar("obscura_request_id", default=None)

# Libraries that are chatty at INFO; an operator who wants them sets the level explicitly.
# opentelemetry is kept at warning as upstream does (spec §7, RUST_LOG defaults).
_QUIET = ("asyncio", "asyncpg", "redis", "picows", "botocore", "urllib3", "httpx", "httpcore", "opentelemetry", "grpc",
          "hpack", "h2")  # h2/hpack log decoded headers (bearer JWTs) at DEBUG

#: LogRecord attributes that are not "extras" (everything else on a record is a structured field).
STANDARD_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "trace_id", "span_id", "rid"}

# Reads (trace_id, span_id) of the active span; installed by obscura.telemetry once tracing runs, so
# this module never imports OpenTelemetry and costs nothing while tracing is off.
_trace_context_source: Callable[[], tuple[str, str] | None] | None = None


def set_trace_context_source(source: Callable[[], tuple[str, str] | None] | None) -> None:
    global _trace_context_source
    _trace_context_source = source


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        source = _trace_context_source
        if source is not None and not hasattr(record, "trace_id"):
            ids = source()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, plus extras."""

    _STANDARD = STANDARD_RECORD_ATTRS

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            out["trace_id"], out["span_id"] = trace_id, record.span_id  # type: ignore[attr-defined]
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(rid)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        trace_id = getattr(record, "trace_id", None)
        ids = ([f"request_id={rid}"] if rid else []) + ([f"trace_id={trace_id}"] if trace_id else [])
        record.rid = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def make_handler(fmt: str = "text", stream=None) -> logging.Handler:
    """A stream handler in ``fmt`` (text or json) that stamps request and trace ids on each record."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    return handler


def configure_logging(fmt: str = "text", level: str = "info", stream=None) -> None:
    """Install one stdout handler on the root logger and structured crash hooks."""
    handler = make_handler(fmt, stream or sys.stdout)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    _install_excepthooks()


def _install_excepthooks() -> None:
    log = logging.getLogger("obscura.crash")

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.critical("unhandled exception", exc_info=(exc_type, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            log.critical("unhandled exception in thread %s", getattr(args.thread, "name", "?"),
                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = hook
    threading.excepthook = thread_hook
