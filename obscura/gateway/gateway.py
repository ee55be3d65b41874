"""The gateway: ticket checks at the upgrade, live sessions of this node, shutdown (spec §3.2-3.3)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

from obscura.aio import LoopBound
from obscura.config import Settings
from obscura.coord import Coordinator, CoordinationError
from obscura.errors import BadRequest, Unauthorized
from obscura.gateway.session import Session
from obscura.http.request import Request
from obscura.services.messages import MessageService, PendingMessage
from obscura.telemetry import Telemetry

__all__ = ["Gateway", "TicketService", "DELIVERY_BUCKETS_S"]

# Fine at the low end, where performance.md goal 3 sits (p50 <= 1 ms, p99 <= 5 ms).
DELIVERY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
                      0.25, 0.5, 1.0, 2.5, 5.0)

# The heartbeat's step: every session is pinged once per ping interval, a group at a time.
HEARTBEAT_STEP_S = 0.1

log = logging.getLogger("obscura.gateway")


class TicketService:
    """Single-use gateway tickets (spec §2.11, §3.2; consumed atomically: decisions §4.3)."""

    def __init__(self, coordinator: Coordinator, ttl_s: int) -> None:
        self._coord = coordinator
        self._ttl_s = ttl_s

    async def issue(self, device_id: uuid.UUID) -> str:
        ticket = str(uuid.uuid4())
        await self._coord.put_ticket(ticket, device_id, self._ttl_s)
        return ticket

    async def redeem(self, ticket: str) -> uuid.UUID | None:
        """The ticket's device, or None when it is unknown, used, expired or not a device id."""
        try:
            raw = await self._coord.take_ticket(ticket)
        except CoordinationError:
            log.error("ticket lookup failed")
            return None
        if raw is None:
            return None
        try:
            return uuid.UUID(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


class Gateway(LoopBound):
    """Owns this node's sessions. Sessions subscribe to their device's events through the
    coordinator; after a bus reconnect every session re-drains (decisions §4.2)."""

    def __init__(self, settings: Settings, coordinator: Coordinator, messages: MessageService,
                 tickets: TicketService, prekey_count: Callable[[uuid.UUID], Awaitable[int | None]],
                 telemetry: Telemetry) -> None:
        self.settings = settings
        self.messages = messages
        self.tickets = tickets
        self.prekey_count = prekey_count
        self.telemetry = telemetry
        self._coord = coordinator
        # How far behind its newest message a pump re-reads (see Session._pump): longer than a
        # send transaction can live, which the request timeout bounds.
        self.pump_lookback = dt.timedelta(seconds=2 * settings.server_request_timeout_secs + 5)
        self._sessions: set[Session] = set()
        self._cancels: set[uuid.UUID] = set()  # devices whose push job is cancelled at the next tick
        self._cancel_tasks: set[asyncio.Task] = set()
        # device -> its session here (a list only when it has several: idle memory)
        self._by_device: dict[uuid.UUID, Session | list[Session]] = {}
        self._heartbeat_task: asyncio.Task | None = None
        # The heartbeat pings one of these groups per step (see _heartbeat); a session joins the
        # next group round-robin and keeps it, so it is pinged once per interval at a fixed phase.
        interval = max(settings.ws_ping_interval_secs, 1)
        self._beat_groups: list[set[Session]] = [set() for _ in range(max(1, round(interval / HEARTBEAT_STEP_S)))]
        self._beat_step_s = interval / len(self._beat_groups)
        self._next_beat_group = 0
        self._unsubscribe_resync = coordinator.on_resync(self._resync)
        self.connections = telemetry.up_down_counter("obscura_websocket_connections", "active sessions")
        self.acks_received = telemetry.counter("obscura_websocket_acks_received_total", "ACK frames with ids")
        self.fetch_batch_size = telemetry.histogram("obscura_message_fetch_batch_size", "rows per pump query")
        self.direct_deliveries = telemetry.counter("obscura_messages_delivered_directly_total",
                                                   "messages written to an idle session without an inbox read")
        self.delivery_latency = telemetry.histogram(
            "obscura_message_delivery_latency_seconds", "send request received -> Envelope written, for "
            "messages written straight to a session on the node that took the send", "s", DELIVERY_BUCKETS_S)
        messages.local_delivery = self.deliver_local
        self.prekey_threshold_reached = telemetry.counter("obscura_prekey_threshold_reached_total",
                                                          "below-threshold prekey checks")
        self.session_duration = telemetry.histogram("obscura_websocket_session_duration_seconds",
                                                    "WebSocket session lifetimes", unit="s")

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def authorize(self, request: Request) -> Callable[[], Session]:
        """GET /v1/gateway?ticket=...: a missing ticket is 400, a bad one 401, no upgrade (§3.2)."""
        values = request.query.get("ticket")
        if not values:
            raise BadRequest("Failed to deserialize query string: missing field `ticket`")
        device_id = await self.tickets.redeem(values[0])
        if device_id is None:
            raise Unauthorized()
        request_id = request.request_id
        return lambda: Session(self, device_id, request_id)

    def attach(self, session: Session) -> None:
        self._sessions.add(session)
        session.beat_group = group = self._next_beat_group
        self._next_beat_group = (group + 1) % len(self._beat_groups)
        self._beat_groups[group].add(session)
        present = self._by_device.get(session.device_id)
        if present is None:
            self._by_device[session.device_id] = session
        elif isinstance(present, list):
            present.append(session)
        else:
            self._by_device[session.device_id] = [present, session]
        if self._heartbeat_task is None:
            self._heartbeat_task = self.bound_loop.create_task(self._heartbeat(), name="gateway-heartbeat")

    async def _heartbeat(self) -> None:
        """One task pings every session once per interval (a task per session costs idle memory),
        one group of sessions every HEARTBEAT_STEP_S. Pinging all of them in one callback held
        the loop for ~10 us per session at every interval: ~0.2 s at the 19,000 sessions one
        process may hold, a stall every message in flight then waited for (bench/RESULTS.md)."""
        loop = self.bound_loop
        due = loop.time()
        while True:
            for group in self._beat_groups:
                due += self._beat_step_s
                await asyncio.sleep(due - loop.time())
                now = loop.time()
                for session in list(group):  # heartbeat() may close a session: it leaves the group
                    session.heartbeat(now)

    def subscribe(self, session: Session):
        return self._coord.subscribe(session.device_id, session.on_event)

    def detach(self, session: Session, subscription) -> None:
        self._sessions.discard(session)
        self._beat_groups[session.beat_group].discard(session)
        present = self._by_device.get(session.device_id)
        if present is session:
            del self._by_device[session.device_id]
        elif isinstance(present, list) and session in present:
            present.remove(session)
            if len(present) == 1:
                self._by_device[session.device_id] = present[0]
        if subscription is not None:
            subscription.close()

    def cancel_push_soon(self, device_id: uuid.UUID) -> None:
        """Cancel the device's pending push job (on connect and on every ACK, spec §6.3); the
        cancels of one loop tick go out as one coordinator call instead of a task per ACK frame."""
        if not self._cancels:
            self.bound_loop.call_soon(self._flush_cancels)
        self._cancels.add(device_id)

    def _flush_cancels(self) -> None:
        devices, self._cancels = list(self._cancels), set()
        task = self.bound_loop.create_task(self.messages.cancel_push(devices))
        self._cancel_tasks.add(task)  # referenced until done
        task.add_done_callback(self._cancel_tasks.discard)

    def deliver_local(self, by_device: dict[uuid.UUID, list[PendingMessage]],
                      received_at: Mapping[uuid.UUID, float] | None = None) -> set[uuid.UUID]:
        """MessageService's hook after a commit: write the new messages to this node's sessions
        of their devices when those are idle and caught up (Session.deliver_direct); a busy
        session is left to its pump. Returns the devices every local session of which took them.
        ``received_at`` (message id -> time.perf_counter() of its send request) feeds the
        delivery latency histogram, one observation per message written (performance.md goal 3)."""
        served = set()
        written = 0
        waits: dict[float, int] = {}  # send request received -> messages written for it
        echo = not self._coord.process_local  # the wake-up is still published and comes back
        for device_id, messages in by_device.items():
            present = self._by_device.get(device_id)
            if present is None:
                continue
            sessions = present if isinstance(present, list) else (present,)
            took = sum(self._try_direct(s, messages, echo) for s in sessions)  # every session tries
            if took:
                written += len(messages) * took
                if received_at:
                    for m in messages:
                        at = received_at.get(m.id)
                        if at is not None:
                            waits[at] = waits.get(at, 0) + took
            if took == len(sessions):
                served.add(device_id)
        if written:
            self.direct_deliveries.add(written)
            now = time.perf_counter()
            for at, count in waits.items():
                self.delivery_latency.record(now - at, times=count)
        return served

    @staticmethod
    def _try_direct(session: Session, messages: list[PendingMessage], echo: bool) -> bool:
        # Runs inside the sender's request: a broken socket must not fail an accepted send.
        try:
            return session.deliver_direct(messages, echo)
        except Exception:  # noqa: BLE001 - the rows are committed; that session's next drain has them
            log.warning("direct delivery to a session failed", exc_info=True)
            return False

    def _resync(self) -> None:
        for session in list(self._sessions):
            session.resync()

    async def shutdown(self, timeout_s: float) -> None:
        """Close 1001 "Server shutting down" on every session and wait for their ACK flushes."""
        self._unsubscribe_resync()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        sessions = list(self._sessions)
        for session in sessions:
            session.close_for_shutdown()
        pending = [s.ended for s in sessions if not s.ended.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
