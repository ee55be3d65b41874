"""Path router: templates like ``/v1/devices/{deviceId}``, static segments beating parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from obscura import errors

if TYPE_CHECKING:
    from obscura.http.request import Request
    from obscura.http.response import Response, StreamResponse

__all__ = ["Route", "Router", "Handler"]

Handler = Callable[["Request"], Awaitable["Response | StreamResponse"]]


@dataclass(frozen=True, slots=True)
class Route:
    """One registered (method, template) pair and its options."""

    method: str
    pattern: str
    handler: Handler | None
    name: str
    timeout_s: float | None = None  # None: server_request_timeout_secs (the global one always applies)
    stream_body: bool = False  # the handler consumes request.stream(); uploads are never buffered whole
    meta: Mapping[str, Any] = field(default_factory=dict)  # free-form, e.g. a rate-limit tier for hooks


class _Node:
    __slots__ = ("static", "param_name", "param", "routes")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param_name: str | None = None
        self.param: _Node | None = None
        self.routes: dict[str, Route] = {}


def _segments(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"route pattern must start with '/': {path!r}")
    return path[1:].split("/")


class Router:
    """A segment trie. GET routes also answer HEAD; a known path with another method is a 405."""

    def __init__(self) -> None:
        self._root = _Node()
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, name: str | None = None,
            timeout_s: float | None = None, stream_body: bool = False,
            meta: Mapping[str, Any] | None = None) -> Route:
        """Register ``handler`` for ``method`` on ``pattern``; returns the Route."""
        method = method.upper()
        node = self._root
        for seg in _segments(pattern):
            if seg.startswith("{") and seg.endswith("}"):
                pname = seg[1:-1]
                if not pname.isidentifier():
                    raise ValueError(f"bad parameter {seg!r} in {pattern!r}")
                if node.param is None:
                    node.param, node.param_name = _Node(), pname
                elif node.param_name != pname:
                    raise ValueError(f"{pattern!r}: parameter {pname!r} clashes with {node.param_name!r}")
                node = node.param
            else:
                node = node.static.setdefault(seg, _Node())
        if method in node.routes:
            raise ValueError(f"duplicate route {method} {pattern}")
        route = Route(method, pattern, handler, name or f"{method} {pattern}", timeout_s, stream_body,
                      dict(meta or {}))
        node.routes[method] = route
        self.routes.append(route)
        return route

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        """The route for ``method`` on the (still percent-encoded) path, and its decoded parameters.

        Raises NotFound (404) or MethodNotAllowed (405, with an ``Allow`` header).
        """
        params: dict[str, str] = {}
        node = self._find(self._root, raw_path[1:].split("/") if raw_path.startswith("/") else None, 0, params)
        if node is None:
            raise errors.NotFound()
        route = node.routes.get(method)
        if route is None and method == "HEAD":
            route = node.routes.get("GET")
        if route is None:
            raise errors.MethodNotAllowed(headers=[("Allow", _allow(node.routes))])
        return route, params

    def _find(self, node: _Node, segs: list[str] | None, i: int, params: dict[str, str]) -> _Node | None:
        if segs is None:
            return None
        if i == len(segs):
            return node if node.routes else None
        seg = segs[i]
        child = node.static.get(unquote(seg) if "%" in seg else seg)
        if child is not None:
            found = self._find(child, segs, i + 1, params)
            if found is not None:
                return found
        if node.param is not None and seg:
            found = self._find(node.param, segs, i + 1, params)
            if found is not None:
                params[node.param_name] = unquote(seg) if "%" in seg else seg  # type: ignore[index]
                return found
        return None


def _allow(routes: Mapping[str, Route]) -> str:
    methods = set(routes)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
