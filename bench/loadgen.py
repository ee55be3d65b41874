"""Load-generator processes of the driver: lean HTTP/1.1 senders, picows recipients, echo and idle clients.

Every function named ``*_main`` is the body of one spawned process: it runs its own uvloop, talks only
to 127.0.0.1, watches the shared ``phase`` value and reports through a queue. Phases: 0 warm-up,
1 throughput (closed loop), 2 latency (open loop at ``rate``), 3 stop.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import picows

from obscura._proto import obscura_pb2 as pb

__all__ = ["sender_main", "recipient_main", "echo_client_main", "idle_main", "HttpClient", "send_request"]

STOP = 3


def _submit_body(targets: list[bytes], rng: random.Random, pad: bytes) -> tuple[bytes, int]:
    """A SendMessageRequest of 1-3 submissions; each message starts with the send time (monotonic ns)."""
    n = rng.randint(1, 3)
    stamp = time.monotonic_ns().to_bytes(8, "big")
    subs = [pb.SendMessageRequest.Submission(submission_id=uuid.uuid4().bytes, device_id=rng.choice(targets),
                                             message=stamp + pad) for _ in range(n)]
    return pb.SendMessageRequest(messages=subs).SerializeToString(), n


def ticket_request(token: str) -> bytes:
    return (b"POST /v1/gateway/ticket HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nAuthorization: Bearer "
            + token.encode() + b"\r\n\r\n")


def ticket_of(body: bytes) -> str:
    """The ticket of a 201 answer to ticket_request."""
    return body.split(b'"ticket":"')[1].split(b'"')[0].decode()


def send_request(token: str, body: bytes) -> bytes:
    return (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token.encode()
            + b"\r\nIdempotency-Key: " + str(uuid.uuid4()).encode()
            + b"\r\nContent-Type: application/octet-stream\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


class HttpClient(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client with one request in flight: parses only the status and length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        head = bytes(self._buf[:end]).lower()
        length = 0
        i = head.find(b"content-length:")
        if i >= 0:
            length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
        if len(self._buf) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self._buf[end + 4:end + 4 + length])
        del self._buf[:end + 4 + length]
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("closed"))

    async def request(self, raw: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await asyncio.wait_for(self._waiter, timeout_s)


async def _http(port: int) -> HttpClient:
    _, proto = await asyncio.get_running_loop().create_connection(HttpClient, "127.0.0.1", port)
    return proto


def _run(coro) -> None:
    import uvloop
    uvloop.run(coro)


# -- senders -----------------------------------------------------------------------------------
def sender_main(cfg: dict, phase, rate, sent, out) -> None:
    _run(_sender(cfg, phase, rate, sent, out))


async def _sender(cfg: dict, phase, rate, sent, out) -> None:
    """``conns`` keep-alive connections; closed loop in phase 0-1, paced at ``rate`` msgs/s in phase 2."""
    targets = [uuid.UUID(t).bytes for t in cfg["targets"]]
    pad = b"\x00" * (cfg["message_bytes"] - 8)
    errors = 0

    async def one(token: str, port: int, seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        client = await _http(port)
        next_at = time.monotonic()
        while phase.value < STOP:
            if phase.value == 2:
                # Open loop: independent exponential gaps per connection (the sum is a Poisson
                # stream), 2 msgs per request on average. Fixed gaps kept every connection in step
                # from the phase's first instant: all of them sent at once, then nothing.
                per_conn = max(rate.value / cfg["total_conns"], 1e-3)
                next_at = max(next_at, time.monotonic() - 0.05) + rng.expovariate(per_conn / 2.0)
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            body, n = _submit_body(targets, rng, pad)
            try:
                status, _ = await client.request(send_request(token, body))
            except (ConnectionError, asyncio.TimeoutError):
                errors += 1
                client.transport.close()
                client = await _http(port)
                continue
            if status == 200:
                sent.value += n
            else:
                errors += 1
        client.transport.close()

    await asyncio.gather(*(one(tok, port, i) for i, (tok, port) in enumerate(cfg["senders"])))
    out.put({"kind": "sender", "errors": errors})


# -- recipients --------------------------------------------------------------------------------
class _Recipient(picows.WSListener):
    def __init__(self, state: dict) -> None:
        self.s = state

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if frame.msg_type != picows.WSMsgType.BINARY:
            return
        msg = pb.WebSocketFrame()
        msg.ParseFromString(frame.get_payload_as_bytes())
        if msg.WhichOneof("payload") != "envelope_batch":
            return
        now = time.monotonic_ns()
        ids = []
        lat = self.s["latencies"] if self.s["phase"].value == 2 else None
        seen = self.s["seen"]
        for env in msg.envelope_batch.envelopes:
            ids.append(env.id)
            if env.id in seen:
                self.s["duplicates"] += 1
                continue
            seen.add(env.id)
            if lat is not None and len(lat) < 200_000:
                lat.append(now - int.from_bytes(env.message[:8], "big"))
        transport.send(picows.WSMsgType.BINARY,
                       pb.WebSocketFrame(ack=pb.AckMessage(message_ids=ids)).SerializeToString())
        self.s["delivered"].value += len(ids)  # duplicates included: they are counted separately


def recipient_main(cfg: dict, phase, delivered, ready, out) -> None:
    _run(_recipients(cfg, phase, delivered, ready, out))


async def _recipients(cfg: dict, phase, delivered, ready, out) -> None:
    state = {"phase": phase, "delivered": delivered, "latencies": [], "seen": set(), "duplicates": 0}
    transports = []
    for url in cfg["urls"]:
        transport, _ = await picows.ws_connect(lambda: _Recipient(state), url, enable_auto_pong=False)
        transports.append(transport)
    ready.value = 1
    while phase.value < STOP:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    for t in transports:
        t.disconnect()
    out.put({"kind": "recipient", "latencies_ns": state["latencies"], "duplicates": state["duplicates"]})


# -- echo baseline -----------------------------------------------------------------------------
class _Echo(picows.WSListener):
    def __init__(self, counter, phase) -> None:
        self.counter, self.phase = counter, phase
        self.payload = b"x" * 64

    def on_ws_connected(self, transport) -> None:
        for _ in range(8):  # 8 in flight per connection (performance.md)
            transport.send(picows.WSMsgType.BINARY, self.payload)

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type == picows.WSMsgType.BINARY:
            self.counter.value += 1
            if self.phase.value < STOP:
                transport.send(picows.WSMsgType.BINARY, self.payload)


def echo_client_main(url: str, conns: int, phase, counter) -> None:
    _run(_echo_clients(url, conns, phase, counter))


async def _echo_clients(url: str, conns: int, phase, counter) -> None:
    transports = [(await picows.ws_connect(lambda: _Echo(counter, phase), url))[0] for _ in range(conns)]
    while phase.value < STOP:
        await asyncio.sleep(0.05)
    for t in transports:
        t.disconnect()


# -- idle connections --------------------------------------------------------------------------
def idle_main(cfg: dict, phase, opened, out) -> None:
    _run(_idle(cfg, phase, opened, out))


async def _idle(cfg: dict, phase, opened, out) -> None:
    """Open ``count`` authenticated sessions (ticket + upgrade, ``concurrency`` at a time), hold them."""
    tokens, port, count = cfg["tokens"], cfg["port"], cfg["count"]
    transports = []
    failures = 0
    sem = asyncio.Semaphore(cfg["concurrency"])
    clients = [await _http(port) for _ in range(cfg["concurrency"])]

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            client = clients.pop()
            try:
                status, body = await client.request(ticket_request(tokens[i % len(tokens)]))
            finally:
                clients.append(client)
            if status != 201:
                failures += 1
                return
            ticket = ticket_of(body)
            try:
                # Each process its own loopback source address: one source address has only
                # ~28k ephemeral ports towards 127.0.0.1:port (ip_local_port_range).
                transport, _ = await picows.ws_connect(picows.WSListener, f"ws://127.0.0.1:{port}/v1/gateway?ticket={ticket}",
                                                       local_addr=(cfg.get("source_ip", "127.0.0.1"), 0))
            except Exception:  # noqa: BLE001 - counted, the run goes on
                failures += 1
                return
            transports.append(transport)
            opened.value += 1

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.monotonic() - start
    out.put({"kind": "idle", "opened": len(transports), "failures": failures, "elapsed_s": elapsed})
    while phase.value < STOP:
        await asyncio.sleep(0.05)
    for t in transports:
        t.disconnect()
    for c in clients:
        c.transport.close()
    await asyncio.sleep(0.2)
