"""A real WebSocket client for tests (picows over a socket), decoding frames with upb (spec §3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx
import picows

from obscura._proto import obscura_pb2 as pb
from tests.support.users import TestUser, bearer


@dataclass
class Closed:
    code: int | None
    reason: bytes


class WsClient(picows.WSListener):
    """Collects what the server sends: envelopes, PreKeyStatus frames, pings, pongs, the close."""

    def __init__(self) -> None:
        self.transport: picows.WSTransport | None = None
        self.envelopes: asyncio.Queue[pb.Envelope] = asyncio.Queue()
        self.prekey_status: asyncio.Queue[pb.PreKeyStatus] = asyncio.Queue()
        self.frames: list[pb.WebSocketFrame] = []          # every decoded binary frame, in order
        self.pings = 0
        self.ping_times: list[float] = []  # time.monotonic() of each ping
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed: Closed | None = None
        self.disconnected = asyncio.Event()
        self.auto_pong = True

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind == picows.WSMsgType.BINARY:
            msg = pb.WebSocketFrame()
            msg.ParseFromString(frame.get_payload_as_bytes())
            self.frames.append(msg)
            which = msg.WhichOneof("payload")
            if which == "envelope_batch":
                for env in msg.envelope_batch.envelopes:
                    self.envelopes.put_nowait(env)
            elif which == "pre_key_status":
                self.prekey_status.put_nowait(msg.pre_key_status)
        elif kind == picows.WSMsgType.PING:
            self.pings += 1
            self.ping_times.append(time.monotonic())
            if self.auto_pong:
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind == picows.WSMsgType.PONG:
            self.pongs.put_nowait(frame.get_payload_as_bytes())
        elif kind == picows.WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.closed = Closed(code, payload[2:])
            transport.disconnect()

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.disconnected.set()

    # -- helpers ---------------------------------------------------------------------------------
    async def next_envelope(self, timeout_s: float = 5) -> pb.Envelope:
        return await asyncio.wait_for(self.envelopes.get(), timeout_s)

    async def envelopes_for(self, count: int, timeout_s: float = 10) -> list[pb.Envelope]:
        return [await self.next_envelope(timeout_s) for _ in range(count)]

    async def no_envelope_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.envelopes.get(), seconds)
        except (TimeoutError, asyncio.TimeoutError):
            return True
        return False

    def ack(self, *message_ids: bytes) -> None:
        frame = pb.WebSocketFrame(ack=pb.AckMessage(message_ids=list(message_ids)))
        self.transport.send(picows.WSMsgType.BINARY, frame.SerializeToString())

    async def ping_pong(self, payload: bytes = b"\x01", timeout_s: float = 5) -> bytes:
        """A client Ping; returns the Pong payload (proves the session is alive and subscribed)."""
        self.transport.send_ping(payload)
        return await asyncio.wait_for(self.pongs.get(), timeout_s)

    async def close(self) -> None:
        if self.transport is not None and not self.disconnected.is_set():
            self.transport.send_close(picows.WSCloseCode.OK)
            self.transport.disconnect()
            await asyncio.wait_for(self.disconnected.wait(), 5)

    async def wait_closed(self, timeout_s: float = 5) -> None:
        await asyncio.wait_for(self.disconnected.wait(), timeout_s)


async def get_ticket(http: httpx.AsyncClient, user: TestUser) -> str:
    res = await http.post("/v1/gateway/ticket", headers=bearer(user.token))
    assert res.status_code == 201, res.text
    return res.json()["ticket"]


async def connect(http: httpx.AsyncClient, user: TestUser, *, port: int | None = None) -> WsClient:
    """Ticket, then upgrade (like upstream's connect_ws), then a ping round trip so the session
    is subscribed before the test goes on (upstream's ensure_subscribed)."""
    ticket = await get_ticket(http, user)
    port = port or http.base_url.port
    # Pings reach the listener, which answers them itself unless a test turns that off.
    _, client = await picows.ws_connect(WsClient, f"ws://127.0.0.1:{port}/v1/gateway?ticket={ticket}",
                                        enable_auto_pong=False)
    await client.ping_pong(b"\x01")
    return client


def submission(device_id: uuid.UUID | bytes, message: bytes, submission_id: bytes | None = None):
    return pb.SendMessageRequest.Submission(
        submission_id=submission_id if submission_id is not None else uuid.uuid4().bytes,
        device_id=device_id.bytes if isinstance(device_id, uuid.UUID) else device_id, message=message)


async def send(http: httpx.AsyncClient, sender: TestUser, *submissions, key: str | None = None,
               expect: int = 200) -> pb.SendMessageResponse:
    body = pb.SendMessageRequest(messages=list(submissions)).SerializeToString()
    res = await http.post("/v1/messages", content=body, headers={
        **bearer(sender.token), "Idempotency-Key": key or str(uuid.uuid4()),
        "Content-Type": "application/x-protobuf"})
    assert res.status_code == expect, res.text
    out = pb.SendMessageResponse()
    out.ParseFromString(res.content)
    return out


async def send_text(http, sender: TestUser, recipient: TestUser, text: bytes) -> None:
    resp = await send(http, sender, submission(recipient.device_id, text))
    assert list(resp.failed_submissions) == []
