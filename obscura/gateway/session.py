"""One WebSocket session: prekey status, message pump, ACKs, prekey pump, heartbeat (spec §3.3-3.6)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from obscura import _speedups
from obscura.coord import Event
from obscura.gateway.acks import AckBatcher

if TYPE_CHECKING:
    from obscura.gateway.gateway import Gateway

__all__ = ["Session", "SHUTDOWN_REASON"]

log = logging.getLogger("obscura.gateway.session")

SHUTDOWN_REASON = b"Server shutting down"
_NIL_UUID = uuid.UUID(int=0)
_GOING_AWAY = 1001


class Session(WSListener):
    """The picows listener of one device's connection. Frame callbacks are synchronous and never
    await (picows); the work runs in tasks this session owns and cancels when it ends."""

    def __init__(self, gateway: Gateway, device_id: uuid.UUID, request_id: str = "") -> None:
        self.gateway = gateway
        self.device_id = device_id
        self._request_id = request_id
        self.transport: WSTransport | None = None
        g = gateway
        self.acks = AckBatcher(self._delete_acked, g.telemetry, batch_size=g.settings.ws_ack_batch_size,
                               flush_interval_s=g.settings.ws_ack_flush_interval_ms / 1000,
                               capacity=g.settings.ws_ack_buffer_size)
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._wake_pump = asyncio.Event()
        self._wake_prekeys = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: list[asyncio.Task] = []
        self._main: asyncio.Task | None = None
        self._subscription = None
        self._closing = False
        self._cancel_push_running = False
        self._acks_task: asyncio.Task | None = None
        self._prekey_task: asyncio.Task | None = None
        self._sent: dict[uuid.UUID, dt.datetime] = {}  # delivered in this session, rows not yet gone
        self._fetches_started = 0
        self._deleted: list[tuple[int, list[uuid.UUID]]] = []  # (fetches started by then, ids)
        self.ended = self._loop.create_future()

    # -- picows callbacks (synchronous) --------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.gateway.attach(self)
        self._main = self._loop.create_task(self._run())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._last_seen = self._loop.time()  # any frame proves liveness (§3.3)
        kind = frame.msg_type
        if kind is WSMsgType.BINARY:
            self._on_binary(frame.get_payload_as_memoryview())
        elif kind is WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send(WSMsgType.CLOSE, frame.get_payload_as_bytes()[:2])
            transport.disconnect()
        elif kind is WSMsgType.TEXT:
            log.debug("text frame ignored")
        # PING is answered by picows (auto-pong); PONG only refreshes liveness.

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        # _run sees wait_disconnected() return and finishes (flushing ACKs); only the loops stop here.
        self._closing = True
        for task in self._tasks:
            task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- frames in -----------------------------------------------------------------------------
    def _on_binary(self, payload: memoryview) -> None:
        try:
            kind, value = _speedups.decode_client_frame(payload)
        except _speedups.DecodeError:
            log.info("undecodable frame ignored")
            return
        if kind != "ack":
            log.info("unexpected Protobuf payload type ignored")
            return
        ids = [uuid.UUID(bytes=bytes(raw)) for raw in value if len(raw) == 16]
        if len(ids) != len(value):
            log.info("%d ACK ids of the wrong length ignored", len(value) - len(ids))
        if not ids:
            return
        self.gateway.acks_received.add(1)
        # The ids stay in _sent until their rows are deleted (see _delete_acked): until then the
        # pump's lookback re-reads them and must not deliver them a second time.
        self.acks.add(ids)
        if self._acks_task is None and not self._closing:  # started on the first ACK: idle sessions stay small
            self._acks_task = self._loop.create_task(self.acks.run())
            self._tasks.append(self._acks_task)
        if not self._cancel_push_running:  # coalesce: one ZREM in flight per session
            self._cancel_push_running = True
            self._spawn(self._cancel_push())

    async def _cancel_push(self) -> None:
        try:
            await self.gateway.messages.cancel_push(self.device_id)
        finally:
            self._cancel_push_running = False

    # -- events from the bus -------------------------------------------------------------------
    def on_event(self, event: int) -> None:
        if event == Event.MESSAGE_RECEIVED:
            self._wake_pump.set()
        elif event == Event.PREKEY_LOW:
            self._wake_prekeys.set()
            if self._prekey_task is None and not self._closing:  # started on the first event
                self._prekey_task = self._loop.create_task(self._prekey_pump())
                self._tasks.append(self._prekey_task)
        elif event == Event.DISCONNECT:
            self.close()

    def resync(self) -> None:
        """After a bus reconnect wake-ups may have been lost: drain again (decisions §4.2)."""
        self._wake_pump.set()

    # -- lifecycle -----------------------------------------------------------------------------
    async def _run(self) -> None:
        g = self.gateway
        counted = False
        started = self._loop.time()
        # One span per session (spec §8.2), never one per frame; ids only.
        span = g.telemetry.start_span("websocket_session", {
            "device.id": str(self.device_id), "request.id": self._request_id,
            "ws.session_id": str(uuid.uuid4())}, server=True)
        try:
            with g.telemetry.session_scope(span):  # logs carry the session's trace; no child spans
                # Subscribe before the first await: a deletion (DISCONNECT) published while the
                # prekey count is read must reach this session. A device deleted even earlier
                # (between its ticket and this upgrade) is seen by the count query itself.
                self._subscription = g.subscribe(self)
                if not await self._send_prekey_status_if_low():  # the very first frame when low (§3.3)
                    self.close()
                    return
                g.connections.add(1)
                counted = True
                self._spawn(g.messages.cancel_push(self.device_id))
                # ACK and prekey loops start on first use and the heartbeat is node-wide
                # (Gateway.heartbeat): an idle session owns one task besides this one.
                self._tasks.append(self._loop.create_task(self._pump()))
                self._wake_pump.set()  # the initial drain
                await self._wait_ended()
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one session's failure must not touch others
            log.exception("session failed")
            self.close()
        finally:
            await self._finish(counted)
            g.session_duration.record(self._loop.time() - started)
            span.end()

    async def _wait_ended(self) -> None:
        assert self.transport is not None
        await self.transport.wait_disconnected()

    async def _finish(self, counted: bool) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        self.gateway.detach(self, self._subscription)
        try:
            await self.acks.flush()  # ACKs received before the end are never lost (§3.3)
        finally:
            if counted:
                self.gateway.connections.add(-1)
            if self.transport is not None:
                self.transport.disconnect()
            if not self.ended.done():
                self.ended.set_result(None)

    def close(self, code: int | None = None, reason: bytes = b"") -> None:
        """Send a Close frame (no status code unless given) and drop the connection."""
        transport = self.transport
        if transport is None or self._closing:
            return
        self._closing = True
        if not transport.is_close_frame_sent:
            payload = b"" if code is None else code.to_bytes(2, "big") + reason
            transport.send(WSMsgType.CLOSE, payload)
        transport.disconnect()

    def close_for_shutdown(self) -> None:
        self.close(_GOING_AWAY, SHUTDOWN_REASON)

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("session task failed: %r", type(task.exception()).__name__)

    # -- the loops -----------------------------------------------------------------------------
    async def _pump(self) -> None:
        """Drain the inbox after every wake-up; wake-ups during a drain coalesce into one (§3.4).

        Upstream keeps a plain (created_at, id) cursor, so a message whose transaction started
        before but committed after a later one is skipped until the next connection (spec §13
        item 13). We re-read a lookback window behind the newest delivered message and skip what
        this session already sent: such late commits are delivered in the same session, and
        nothing is sent twice.
        """
        g = self.gateway
        limit = g.settings.ws_message_fetch_batch_size
        max_bytes = g.settings.ws_max_batch_bytes
        lookback = g.pump_lookback
        newest: dt.datetime | None = None
        while True:
            await self._wake_pump.wait()
            self._wake_pump.clear()
            after = None if newest is None else (newest - lookback, _NIL_UUID)
            while not self._closing:
                self._fetches_started += 1
                started = self._fetches_started
                rows = await g.messages.fetch_pending(self.device_id, after, limit)
                g.fetch_batch_size.record(len(rows))
                if not rows:
                    break
                after = (rows[-1].created_at, rows[-1].id)
                if newest is None or rows[-1].created_at > newest:
                    newest = rows[-1].created_at
                fresh = [r for r in rows if r.id not in self._sent]
                for r in fresh:
                    self._sent[r.id] = r.created_at
                self._forget_deleted(started)
                envelopes = [_speedups.encode_envelope(r.id.bytes, r.sender_id.bytes, r.timestamp_ms,
                                                       r.content, r.sender_device_id.bytes) for r in fresh]
                for batch in _speedups.split_batches(envelopes, max_bytes):
                    if not self._writable.is_set():
                        await self._writable.wait()  # backpressure: the socket is full (§3.4 step 6)
                    if self._closing:
                        return
                    self.transport.send(WSMsgType.BINARY, _speedups.encode_envelope_batch_frame(batch))
                if len(rows) < limit:
                    break
            if newest is not None:
                horizon = newest - lookback
                for message_id in [k for k, created in self._sent.items() if created < horizon]:
                    del self._sent[message_id]

    async def _send_prekey_status_if_low(self) -> bool:
        """False when the device no longer exists."""
        g = self.gateway
        count = await g.prekey_count(self.device_id)
        if count is None:
            return False
        threshold = g.settings.pre_key_refill_threshold
        if count < threshold and not self._closing:
            g.prekey_threshold_reached.add(1)
            self.transport.send(WSMsgType.BINARY, _speedups.encode_prekey_status_frame(count, threshold))
        return True

    async def _prekey_pump(self) -> None:
        debounce_s = self.gateway.settings.ws_prekey_debounce_interval_ms / 1000
        while True:
            await self._wake_prekeys.wait()
            await asyncio.sleep(debounce_s)
            self._wake_prekeys.clear()  # wake-ups during the debounce are folded into this one
            if not await self._send_prekey_status_if_low():
                self.close()
                return

    def heartbeat(self, now: float) -> None:
        """Called by the gateway every ping interval: ping, or drop a client silent for interval +
        timeout (§3.3)."""
        if self._closing or self.transport is None:
            return
        s = self.gateway.settings
        if now - self._last_seen > s.ws_ping_interval_secs + s.ws_ping_timeout_secs:
            log.info("heartbeat timeout")
            self.close()
            return
        self.transport.send_ping(b"")

    async def _delete_acked(self, ids) -> int:
        try:
            return await self.gateway.messages.delete_acked(self.device_id, ids)
        finally:
            self._deleted.append((self._fetches_started, ids))

    def _forget_deleted(self, fetch_number: int) -> None:
        """Drop deleted ids from _sent once a fetch that started after their delete has returned:
        an earlier fetch may still have read those rows and must not deliver them again."""
        keep = []
        for seen_by, ids in self._deleted:
            if seen_by < fetch_number:
                for message_id in ids:
                    self._sent.pop(message_id, None)
            else:
                keep.append((seen_by, ids))
        self._deleted = keep
