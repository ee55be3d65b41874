"""Front-door HTTP/1.1 server: request/response types, router, server and the gateway hand-off."""

from obscura.http.gateway import GatewayHandoff
from obscura.http.request import ClientDisconnected, Headers, Request
from obscura.http.response import Response, StreamResponse, error_response, json_response
from obscura.http.router import Route, Router
from obscura.http.server import Hook, HttpServer

__all__ = [
    "ClientDisconnected", "GatewayHandoff", "Headers", "Hook", "HttpServer", "Request", "Response",
    "Route", "Router", "StreamResponse", "error_response", "json_response",
]
