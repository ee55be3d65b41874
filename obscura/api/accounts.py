"""REST: POST /v1/users, POST|DELETE /v1/sessions, POST /v1/sessions/refresh (spec §2.2-2.5)."""

from __future__ import annotations

from obscura.api.common import Authenticator, EMPTY_OK, json_body
from obscura.api.ratelimit import AUTH
from obscura.http.request import Request
from obscura.http.response import Response, json_response
from obscura.http.router import Router
from obscura.services.accounts import AccountService

__all__ = ["add_account_routes"]


def add_account_routes(router: Router, accounts: AccountService, auth: Authenticator) -> None:
    async def register(request: Request) -> Response:
        body = await json_body(request)
        session = await accounts.register(body.str("username"), body.str("password"))
        return json_response(session.as_json(), status=201)

    async def login(request: Request) -> Response:
        body = await json_body(request)
        session = await accounts.login(body.str("username"), body.str("password"),
                                       body.str("deviceId", optional=True))
        return json_response(session.as_json())

    async def refresh(request: Request) -> Response:
        body = await json_body(request)
        session = await accounts.refresh(body.str("refreshToken"))
        return json_response(session.as_json())

    async def logout(request: Request) -> Response:
        claims = await auth(request)
        body = await json_body(request)
        await accounts.logout(claims.user_id, body.str("refreshToken"))
        return EMPTY_OK

    router.add("POST", "/v1/users", register, name="register", meta=AUTH)
    router.add("POST", "/v1/sessions", login, name="login", meta=AUTH)
    router.add("DELETE", "/v1/sessions", logout, name="logout", meta=AUTH)
    router.add("POST", "/v1/sessions/refresh", refresh, name="refresh", meta=AUTH)
