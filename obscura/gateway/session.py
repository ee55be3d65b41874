"""One WebSocket session: prekey status, message pump, ACKs, prekey pump, heartbeat (spec §3.3-3.6)."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import itertools
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from obscura import _speedups
from obscura.coord import Event
from obscura.gateway.acks import AckBatcher
from obscura.ids import uuid_from_bytes

if TYPE_CHECKING:
    from obscura.gateway.gateway import Gateway
    from obscura.services.messages import PendingMessage

__all__ = ["Session", "SHUTDOWN_REASON"]

log = logging.getLogger("obscura.gateway.session")

SHUTDOWN_REASON = b"Server shutting down"
_ECHO_WAIT_S = 2.0  # how long a directly delivered message's own bus wake-up is expected
_NIL_UUID = uuid.UUID(int=0)
_GOING_AWAY = 1001
_MAX_SKIP = 256  # ids named in one inbox read as already sent (see Session._skip_ids)


class Session(WSListener):
    """The picows listener of one device's connection. Frame callbacks are synchronous and never
    await (picows); the work runs in tasks this session owns and cancels when it ends.

    Idle sessions are most of a node's memory (performance.md goal 4): slots instead of a dict,
    bare futures instead of asyncio.Event (each Event owns an ~860-byte deque), and the ACK
    batcher and prekey loop exist only once used."""

    __slots__ = ("gateway", "device_id", "_request_id", "transport", "acks", "_loop", "_last_seen",
                 "_woken", "_wake_waiter", "_wake_prekeys", "_paused", "_tasks", "_main", "_subscription",
                 "_closing", "_prekey_task", "_sent",
                 "_fetches_started", "_deleted", "ended", "_pump_task", "_pump_retired", "_newest", "_gone",
                 "_context", "_fetching", "_echoes", "_echo_until", "_skipped", "beat_group")

    def __init__(self, gateway: Gateway, device_id: uuid.UUID, request_id: str = "") -> None:
        self.gateway = gateway
        self.device_id = device_id
        self._request_id = request_id
        self.transport: WSTransport | None = None
        self.acks: AckBatcher | None = None  # created on the first ACK
        self.beat_group = 0  # the gateway's heartbeat group (Gateway.attach)
        self._loop = asyncio.get_running_loop()
        self._last_seen = self._loop.time()
        self._woken = False  # the pump has a wake-up to serve
        self._wake_waiter: asyncio.Future | None = None  # the idle pump waits on it
        self._wake_prekeys: asyncio.Event | None = None  # created with the prekey loop
        self._paused: asyncio.Future | None = None  # set while picows says the socket is full
        self._tasks: list[asyncio.Task] = []
        self._main: asyncio.Task | None = None
        self._pump_task: asyncio.Task | None = None
        self._pump_retired = False  # the heartbeat ended an idle pump; the next wake-up starts one
        self._newest: dt.datetime | None = None  # created_at of the newest message delivered
        self._gone: asyncio.Future | None = None  # _run waits on it; set by on_ws_disconnected
        self._context: contextvars.Context | None = None  # _run's: pumps started later run in it
        self._fetching = False  # an inbox read is in flight
        self._echoes = 0  # bus wake-ups still to come for messages delivered directly (cluster mode)
        self._echo_until = 0.0
        self._skipped = False  # a wake-up was taken for an echo since the last drain
        self._subscription = None
        self._closing = False
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
        # _run sees _gone resolve and finishes (flushing ACKs); only the loops stop here.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        gone = self._gone
        if gone is not None and not gone.done():
            gone.set_result(None)

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = self._loop.create_future()

    def resume_writing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _wake(self) -> None:
        self._woken = True
        waiter = self._wake_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif self._pump_retired and self._pump_task is None and not self._closing:
            self._start_pump()

    async def _wait_woken(self) -> None:
        while not self._woken:
            waiter = self._wake_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                if self._wake_waiter is waiter:
                    self._wake_waiter = None
        self._woken = False

    def _start_pump(self) -> None:
        # In the session's context, not the caller's (a wake-up arrives inside a sender's request).
        task = self._pump_task = self._loop.create_task(self._pump(), context=self._context)
        self._tasks.append(task)

    def _retire_idle_pump(self) -> None:
        """End a pump that waits for work (it costs ~1 KiB per idle session); the next wake-up
        starts a new one, with the same cursor and sent-set (they live on the session)."""
        task = self._pump_task
        if task is None or self._woken or self._wake_waiter is None or self._paused is not None:
            return  # not started, busy, or about to run
        self._pump_task = None
        self._pump_retired = True
        if task in self._tasks:
            self._tasks.remove(task)
        task.cancel()

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
        ids = [uuid_from_bytes(bytes(raw)) for raw in value if len(raw) == 16]
        if len(ids) != len(value):
            log.info("%d ACK ids of the wrong length ignored", len(value) - len(ids))
        if not ids:
            return
        g = self.gateway
        g.acks_received.add(1)
        acks = self.acks
        if acks is None:  # created on the first ACK: idle sessions stay small
            s = g.settings
            acks = self.acks = AckBatcher(self._delete_acked, g.telemetry, batch_size=s.ws_ack_batch_size,
                                          flush_interval_s=s.ws_ack_flush_interval_ms / 1000,
                                          capacity=s.ws_ack_buffer_size)
        # The ids stay in _sent until their rows are deleted (see _delete_acked): until then the
        # pump's lookback re-reads them and must not deliver them a second time.
        acks.add(ids)
        g.cancel_push_soon(self.device_id)  # the node batches them: one call per loop tick

    # -- events from the bus -------------------------------------------------------------------
    def on_event(self, event: int) -> None:
        if event == Event.MESSAGE_RECEIVED:
            if self._echoes:
                self._echoes -= 1
                if self._loop.time() <= self._echo_until:
                    self._skipped = True
                    return  # our own wake-up for a message already delivered directly: no re-read
            self._wake()
        elif event == Event.PREKEY_LOW:
            if self._wake_prekeys is None:
                self._wake_prekeys = asyncio.Event()
            self._wake_prekeys.set()
            if self._prekey_task is None and not self._closing:  # started on the first event
                self._prekey_task = self._loop.create_task(self._prekey_pump())
                self._tasks.append(self._prekey_task)
        elif event == Event.DISCONNECT:
            self.close()

    def resync(self) -> None:
        """After a bus reconnect wake-ups may have been lost: drain again (decisions §4.2)."""
        self._echoes = 0
        self._wake()

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
                g.cancel_push_soon(self.device_id)
                # ACK and prekey loops start on first use and the heartbeat is node-wide
                # (Gateway.heartbeat): an idle session owns one task besides this one.
                self._context = contextvars.copy_context()
                self._start_pump()
                self._wake()  # the initial drain
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
        # Our own future rather than transport.wait_disconnected(): that one shields picows'
        # future, an extra future and callbacks held by every idle session.
        transport = self.transport
        assert transport is not None
        if transport.is_disconnected:
            return
        self._gone = self._loop.create_future()
        await self._gone

    async def _finish(self, counted: bool) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        # A cancelled task keeps its CancelledError, whose traceback holds the task's frames and so
        # this session: without the session's references to its tasks its end leaves no reference
        # cycle, and all of it is freed at once instead of by the garbage collector (obscura/gcpolicy.py).
        self._tasks = []
        self._pump_task = self._prekey_task = None
        self.gateway.detach(self, self._subscription)
        try:
            if self.acks is not None:
                await self.acks.flush()  # ACKs received before the end are never lost (§3.3)
        finally:
            if counted:
                self.gateway.connections.add(-1)
            if self.transport is not None:
                self.transport.disconnect()
            if not self.ended.done():
                self.ended.set_result(None)
            self._main = None  # this task: see above

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

    # -- delivery ------------------------------------------------------------------------------
    def deliver_direct(self, messages: list[PendingMessage], expect_echo: bool = False) -> bool:
        """Write just-committed messages (in order) now, if this session is idle and caught up:
        its pump waits for work (or was retired), no wake-up is pending, the socket takes data,
        and nothing it delivered is newer. Otherwise False: the wake-up and the pump deliver them
        (a message committed late, behind a newer one, always goes through the pump's lookback).
        They enter _sent like pumped ones, so a later re-read never sends them twice.

        ``expect_echo`` (cluster mode): the sender still publishes the wake-up for other nodes and
        it comes back here too; that one wake-up is skipped. Whichever wake-up comes first is
        the one skipped, so a remote message's wake-up may be taken for ours: then ours still
        follows and drains it. In case ours never comes (a failed publish), the heartbeat drains
        once whenever a wake-up was skipped since the last drain; a bus reconnect resyncs."""
        if self._closing or self._context is None or self._woken or self._paused is not None:
            return False
        waiter = self._wake_waiter
        if not (waiter is not None and not waiter.done() or self._pump_task is None and self._pump_retired):
            return False  # the pump is draining: it alone keeps the order
        created_at = messages[0].created_at
        if self._newest is not None and created_at < self._newest:
            return False
        self._newest = created_at
        sent = self._sent
        # The pump may have read some of them between their commit and this call (a wake-up
        # for another message): those are already delivered.
        messages = [m for m in messages if m.id not in sent]
        for m in messages:
            sent[m.id] = created_at
        if expect_echo:
            self._echoes += 1
            self._echo_until = self._loop.time() + _ECHO_WAIT_S
        if messages:
            for frame in self._frames(messages):
                self.transport.send(WSMsgType.BINARY, frame)
        return True

    def _frames(self, rows) -> Iterator[bytes]:
        """EnvelopeBatch frames for these rows, split at ws_max_batch_bytes (§3.4), built one at a time."""
        envelopes = [_speedups.encode_envelope(r.id.bytes, r.sender_id.bytes, r.timestamp_ms,
                                               r.content, r.sender_device_id.bytes) for r in rows]
        for batch in _speedups.split_batches(envelopes, self.gateway.settings.ws_max_batch_bytes):
            yield _speedups.encode_envelope_batch_frame(batch)

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
        lookback = g.pump_lookback
        while True:
            await self._wait_woken()
            self._skipped = False  # this drain covers whatever a skipped wake-up announced
            newest = self._newest
            after = None if newest is None else (newest - lookback, _NIL_UUID)
            while not self._closing:
                self._fetches_started += 1
                started = self._fetches_started
                self._fetching = True
                try:
                    rows = await g.messages.fetch_pending(self.device_id, after, limit, self._skip_ids())
                finally:
                    self._fetching = False
                g.fetch_batch_size.record(len(rows))
                if not rows:
                    break
                after = (rows[-1].created_at, rows[-1].id)
                if newest is None or rows[-1].created_at > newest:
                    newest = self._newest = rows[-1].created_at
                fresh = [r for r in rows if r.id not in self._sent]
                for r in fresh:
                    self._sent[r.id] = r.created_at
                self._forget_deleted(started)
                for frame in self._frames(fresh):
                    while self._paused is not None:
                        await self._paused  # backpressure: the socket is full (§3.4 step 6)
                    if self._closing:
                        return
                    self.transport.send(WSMsgType.BINARY, frame)
                if len(rows) < limit:
                    break
            if newest is not None:
                self._prune_sent(newest - lookback)
            elif not self._woken and not self._closing:
                # Nothing was ever delivered and the inbox is empty: most idle sessions stay so;
                # they keep no task (the next wake-up starts one).
                self._pump_task = None
                self._pump_retired = True
                task = asyncio.current_task()
                if task in self._tasks:
                    self._tasks.remove(task)
                return

    def _skip_ids(self) -> list[uuid.UUID]:
        """Ids the inbox read may leave out: what this session sent and has not seen deleted
        (most of the lookback window, performance.md). At most the newest _MAX_SKIP: beyond
        that (a client that does not ACK) the read returns them and the ``_sent`` filter drops
        them, as it always does."""
        sent = self._sent
        if len(sent) <= _MAX_SKIP:
            return list(sent)
        return list(itertools.islice(reversed(sent), _MAX_SKIP))

    def _prune_sent(self, horizon: dt.datetime) -> None:
        """Forget delivered ids older than the lookback window: no re-read reaches back that far."""
        sent = self._sent
        for message_id in [k for k, created in sent.items() if created < horizon]:
            del sent[message_id]

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
        wake = self._wake_prekeys
        assert wake is not None  # created before this loop starts (on_event)
        while True:
            await wake.wait()
            await asyncio.sleep(debounce_s)
            wake.clear()  # wake-ups during the debounce are folded into this one
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
        if self._echoes and now > self._echo_until:
            self._echoes = 0  # stop expecting an echo that did not come
        if self._skipped:  # a skipped wake-up might have been a remote one: drain once to be sure
            self._skipped = False
            self._wake()
        if self._sent and self._newest is not None and not self._fetching:
            # Sessions fed by deliver_direct may not run their pump for a long time.
            self._prune_sent(self._newest - self.gateway.pump_lookback)
        self._retire_idle_pump()

    async def _delete_acked(self, ids) -> int:
        try:
            return await self.gateway.messages.delete_acked(self.device_id, ids)
        finally:
            if self._fetching:  # a read in flight may have seen these rows: forget them after it
                self._deleted.append((self._fetches_started, ids))
            else:  # every later read starts after the delete: it cannot return them
                sent = self._sent
                for message_id in ids:
                    sent.pop(message_id, None)

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
