"""Local stand-ins for Google's OAuth2 and FCM endpoints (HTTP/1.1) and Apple's APNs (real HTTP/2),
listening on 127.0.0.1 and recording every request they receive."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.tls import self_signed_certificate

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    http_version: str = "1.1"
    alpn: str | None = None

    def json(self):
        return json.loads(self.body)


Reply = tuple[int, bytes]
Handler = Callable[[Recorded], Awaitable[Reply]]


class FakeHttp1Server:
    """A keep-alive HTTP/1.1 server with Content-Length bodies, enough for httpx."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.requests: list[Recorded] = []
        self.active = 0
        self.peak_active = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeHttp1Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        await _close(self._server, self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _version = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, value = raw.decode("latin-1").split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Recorded(method, target, headers, body)
                self.requests.append(request)
                self.active += 1
                self.peak_active = max(self.peak_active, self.active)
                try:
                    status, payload = await self._handler(request)
                finally:
                    self.active -= 1
                writer.write(f"HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _close(server: asyncio.Server, writers: set[asyncio.StreamWriter]) -> None:
    server.close()
    for writer in list(writers):
        writer.close()
    await asyncio.wait_for(server.wait_closed(), 5)


@dataclass
class ServiceAccountFiles:
    path: Path
    client_email: str
    public_key: rsa.RSAPublicKey


def write_service_account(folder: Path) -> ServiceAccountFiles:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = "obscura-test@test-project.iam.gserviceaccount.com"
    path = folder / "service-account.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "test-project",
                                "client_email": email, "private_key": pem}))
    return ServiceAccountFiles(path, email, key.public_key())


@dataclass
class FakeGoogle:
    """OAuth2 token endpoint (``/token``, verifies the RS256 assertion) and FCM v1 (``/v1/projects/...``).

    ``fcm_replies`` is consumed first; after that every send gets ``default_reply``.
    """

    account: ServiceAccountFiles
    project: str = "test-project"
    expires_in: int = 3600
    token_status: int = 200
    fcm_delay_s: float = 0.0
    check_times: bool = True  # off when the provider runs on a fake clock
    default_reply: Reply = (200, b'{"name":"projects/test-project/messages/1"}')
    fcm_replies: list[Reply] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    assertions: list[dict] = field(default_factory=list)
    server: FakeHttp1Server | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    async def __aenter__(self) -> FakeGoogle:
        self.server = await FakeHttp1Server(self._handle).__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        await self.server.__aexit__(*exc)

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.server.requests if r.path == "/token"]

    @property
    def sends(self) -> list[Recorded]:
        return [r for r in self.server.requests if r.path.startswith("/v1/")]

    def sends_to(self, token: str) -> int:
        return sum(1 for r in self.sends if r.json()["message"]["token"] == token)

    async def _handle(self, request: Recorded) -> Reply:
        if request.path == "/token":
            return self._token(request)
        if request.path != f"/v1/projects/{self.project}/messages:send" or request.method != "POST":
            return 404, b'{"error":{"status":"NOT_FOUND"}}'
        if request.headers.get("authorization") not in {f"Bearer {t}" for t in self.issued}:
            return 401, b'{"error":{"status":"UNAUTHENTICATED"}}'
        if self.fcm_delay_s:
            await asyncio.sleep(self.fcm_delay_s)
        return self.fcm_replies.pop(0) if self.fcm_replies else self.default_reply

    def _token(self, request: Recorded) -> Reply:
        form = dict(urllib.parse.parse_qsl(request.body.decode()))
        if self.token_status != 200:
            return self.token_status, b'{"error":"unavailable"}'
        try:
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            claims = jwt.decode(form["assertion"], self.account.public_key, algorithms=["RS256"],
                                audience=self.token_uri, issuer=self.account.client_email,
                                options={"require": ["iat", "exp", "iss", "aud", "scope"],
                                         "verify_exp": self.check_times, "verify_iat": self.check_times})
            assert claims["scope"] == FCM_SCOPE and claims["exp"] - claims["iat"] == 3600
        except (AssertionError, KeyError, jwt.PyJWTError):
            return 400, b'{"error":"invalid_grant"}'
        self.assertions.append(claims)
        token = f"ya29.test-{len(self.issued)}"
        self.issued.append(token)
        return 200, json.dumps({"access_token": token, "expires_in": self.expires_in,
                                "token_type": "Bearer"}).encode()


# -- APNs -------------------------------------------------------------------------------------------
def self_signed_tls(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context offering only h2 through ALPN, client context trusting that certificate)."""
    cert_path, key_path = self_signed_certificate(folder, "apns")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    server.set_alpn_protocols(["h2"])
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def apns_signing_key(folder: Path) -> tuple[Path, ec.EllipticCurvePublicKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = folder / "AuthKey_TEST123456.p8"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path, key.public_key()


class FakeApns:
    """An HTTP/2-only server (h2), over TLS with ALPN ``h2`` or in clear text with prior knowledge.

    ``replies`` is consumed first, then ``default_reply``; the provider JWT is verified with
    ``public_key`` unless it is None.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey | None, *, tls: ssl.SSLContext | None = None,
                 key_id: str = "TEST123456", team_id: str = "TEAM123456") -> None:
        self._public_key = public_key
        self._tls = tls
        self._key_id, self._team_id = key_id, team_id
        self.replies: list[Reply] = []
        self.default_reply: Reply = (200, b"")
        self.requests: list[Recorded] = []
        self.jwt_claims: list[dict] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def sends_to(self, token: str) -> int:
        return sum(1 for r in self.requests if r.path == f"/3/device/{token}")

    async def __aenter__(self) -> FakeApns:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        await _close(self._server, self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        self._respond(conn, event.stream_id, headers, bytes(body), alpn)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _respond(self, conn, stream_id: int, headers: dict[str, str], body: bytes, alpn: str | None) -> None:
        request = Recorded(headers[":method"], headers[":path"],
                           {k: v for k, v in headers.items() if not k.startswith(":")}, body, "2", alpn)
        self.requests.append(request)
        status, payload = self._check_jwt(request) or (self.replies.pop(0) if self.replies else self.default_reply)
        reply = [(":status", str(status)), ("apns-id", "00000000-0000-0000-0000-000000000001")]
        if payload:
            reply.append(("content-type", "application/json"))
        conn.send_headers(stream_id, reply, end_stream=not payload)
        if payload:
            conn.send_data(stream_id, payload, end_stream=True)

    def _check_jwt(self, request: Recorded) -> Reply | None:
        if self._public_key is None:
            return None
        auth = request.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return 403, b'{"reason":"MissingProviderToken"}'
        token = auth[7:]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self._public_key, algorithms=["ES256"], options={"require": ["iat", "iss"]})
        except jwt.PyJWTError:
            return 403, b'{"reason":"InvalidProviderToken"}'
        if header.get("kid") != self._key_id or claims["iss"] != self._team_id:
            return 403, b'{"reason":"InvalidProviderToken"}'
        self.jwt_claims.append(claims)
        return None
