"""Fuzz target for header parsers and JWTs: Idempotency-Key, If-Match, If-None-Match,
X-Forwarded-For, Authorization (TokenService.verify behind the Authenticator).

Each parser may only return its documented value or raise its documented 4xx. A bearer token is
accepted only when an independent check agrees: HS256 header, an HMAC that matches our secret,
a UUID ``sub`` and an ``exp`` within the leeway. The first byte picks the parser; mode 5 XORs
the rest into a genuine token, so the fuzzer explores near-valid forgeries.

Run:   .venv/bin/python fuzz/headers_target.py /tmp/headers-corpus fuzz/corpus/headers -max_total_time=600
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import uuid

from obscura.api.common import Authenticator
from obscura.errors import BadRequest, Unauthorized
from obscura.services.attachments import etag_matches
from obscura.services.backups import expected_version
from obscura.services.messages import parse_idempotency_key
from obscura.services.ratelimit import client_ip
from obscura.services.tokens import LEEWAY_S, TokenService

__all__ = ["check"]

SECRET = "fuzz-secret"
NOW = 1_700_000_000.0
_TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"),
            ipaddress.ip_network("::1/128"))
_USER, _DEVICE = uuid.UUID(int=1), uuid.UUID(int=2)


class _Req:
    __slots__ = ("headers", "state")

    def __init__(self, value: str) -> None:
        self.headers = {"authorization": value}
        self.state: dict = {}


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _independently_valid(token: str) -> bool:
    """What a correct HS256 verifier accepts (spec §6.8), written without PyJWT."""
    try:
        head, payload, sig = token.split(".")
        header = json.loads(_b64url(head))
        body = json.loads(_b64url(payload))
        expected = hmac.new(SECRET.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(_b64url(sig), expected):
            return False
        exp = body["exp"]
        uuid.UUID(body["sub"])
        return isinstance(exp, int) and not isinstance(exp, bool) and exp + LEEWAY_S >= NOW
    except Exception:  # noqa: BLE001 - anything malformed is a rejection
        return False


_tokens = TokenService(SECRET, 3600, clock=lambda: NOW, cache_size=64)
_GENUINE = _tokens.issue(_USER, _DEVICE)[0].encode()
_loop = asyncio.new_event_loop()


def _check_token(text: str) -> None:
    auth = Authenticator(_tokens)
    try:
        claims = _loop.run_until_complete(auth(_Req(text)))
    except Unauthorized:
        return
    assert text.startswith("Bearer "), "accepted without the exact Bearer prefix"
    assert _independently_valid(text[7:]), "a token no HS256 verifier would accept was accepted"
    assert isinstance(claims.user_id, uuid.UUID)


def check(data: bytes) -> None:
    """Raise AssertionError when a header parser returns or raises something undocumented."""
    if not data:
        return
    mode, rest = data[0] % 6, data[1:]
    text = rest.decode("latin-1")  # header values reach us decoded as latin-1 (obscura.http.protocol)
    if mode == 0:
        try:
            assert isinstance(parse_idempotency_key(text), uuid.UUID)
        except BadRequest:
            pass
    elif mode == 1:
        none_match, _, match = text.partition("\n")
        for args in ((None, match), (none_match, match), (None, None)):
            try:
                version = expected_version(*args)
            except BadRequest:
                continue
            assert -(2**31) <= version < 2**31
    elif mode == 2:
        assert etag_matches(text, str(_USER)) == (text.strip('"') == str(_USER))
    elif mode == 3:
        peer, _, xff = text.partition("\n")
        for p in (peer, "127.0.0.1", "10.1.2.3", "::1"):
            got = client_ip(p, xff, _TRUSTED)
            assert got == p or got == str(ipaddress.ip_address(p)) or got in {
                str(ipaddress.ip_address(t.strip())) for t in xff.split(",") if _is_ip(t.strip())}
    elif mode == 4:
        _check_token(text)
        _check_token("Bearer " + text)
    else:
        forged = bytes(a ^ b for a, b in zip(_GENUINE, rest.ljust(len(_GENUINE), b"\0"))) + rest[len(_GENUINE):]
        _check_token("Bearer " + forged.decode("latin-1"))


def _is_ip(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
        return True
    except ValueError:
        return False


def main() -> None:
    from runner import run_fuzzer  # fuzz/ is sys.path[0] when run as a script

    run_fuzzer(check)


if __name__ == "__main__":
    main()
