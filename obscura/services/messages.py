"""Sending messages (spec §2.10, §5.1-5.3) and the inbox operations the gateway needs (§3.4-3.5)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from obscura import _speedups
from obscura.ids import new_message_id, uuid_from_bytes
from obscura.coord import Coordinator, CoordinationError, Event, idempotency_key
from obscura.errors import BadRequest, PayloadTooLarge, Unauthorized
from obscura.telemetry import Telemetry, traced

__all__ = ["MessageService", "PendingMessage", "Enqueued", "Committed", "CommitListener", "LocalDelivery",
           "SenderGone", "MessageStore", "parse_idempotency_key"]

log = logging.getLogger("obscura.messages")

# SendMessageResponse.ErrorCode (spec §3.1) and the exact messages of §5.1.
INVALID_DEVICE, MALFORMED_DEVICE_ID, MALFORMED_SUBMISSION_ID, MESSAGE_MISSING = 1, 2, 3, 4
_MALFORMED_SUBMISSION = (MALFORMED_SUBMISSION_ID, "Invalid submission_id UUID bytes (expected 16)")
_MALFORMED_DEVICE = (MALFORMED_DEVICE_ID, "Invalid device_id UUID bytes (expected 16)")
_MISSING = (MESSAGE_MISSING, "Missing message payload")
_NOT_FOUND = (INVALID_DEVICE, "Device not found")


class SenderGone(Exception):
    """The sending device was deleted while its token is still valid."""


@dataclass(frozen=True, slots=True)
class PendingMessage:
    id: uuid.UUID
    sender_id: uuid.UUID
    sender_device_id: uuid.UUID
    content: bytes
    created_at: dt.datetime

    @property
    def timestamp_ms(self) -> int:
        return int(self.created_at.timestamp() * 1000)


class Enqueued(NamedTuple):
    existing: set[uuid.UUID]  # target devices that exist
    inserted: list[tuple[uuid.UUID, uuid.UUID]]  # (message id, target device) of every new row
    created_at: dt.datetime | None  # of the inserted rows (one statement, one transaction time)
    served: Set[uuid.UUID] = frozenset()  # devices whose sessions here took them at the commit


class Committed(NamedTuple):
    """One send request's part of a group commit, as the store hands it to its ``on_commit``."""
    sender_id: uuid.UUID
    sender_device_id: uuid.UUID
    rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bytes]]  # as given to enqueue
    received_at: float | None  # time.perf_counter() when the send request arrived
    result: Enqueued


#: Called by the store once per commit, before any of its send requests resume, with every send
#: request of that commit; returns the devices served completely (Enqueued.served).
CommitListener = Callable[[list[Committed]], Set[uuid.UUID]]

#: The gateway's hook: hand committed messages (device -> its new messages, in order) to this
#: node's sessions; returns the devices whose every local session took them directly.
# (messages by target device, message id -> time.perf_counter() when its send request arrived)
LocalDelivery = Callable[[dict[uuid.UUID, list[PendingMessage]], Mapping[uuid.UUID, float]], set[uuid.UUID]]


class MessageStore(Protocol):
    on_commit: CommitListener | None

    async def enqueue(self, sender_id: uuid.UUID, sender_device_id: uuid.UUID, ttl_days: int,
                      rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bytes]],
                      received_at: float | None = None) -> Enqueued: ...
    async def fetch_pending(self, device_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                            limit: int, skip: Sequence[uuid.UUID] = ()) -> list[PendingMessage]: ...
    async def delete_acked(self, device_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> int: ...


def parse_idempotency_key(raw: str | None) -> uuid.UUID:
    """Any UUID spelling (hyphenated, 32 hex, braced, ``urn:uuid:``), else 400 (spec §2.10)."""
    if raw is None or not raw.isascii():
        raise BadRequest("Missing idempotency-key header")
    try:
        return uuid.UUID(raw.strip())
    except ValueError as exc:
        raise BadRequest(f"Invalid idempotency-key: {exc}") from None


class MessageService:
    def __init__(self, store: MessageStore, coordinator: Coordinator, telemetry: Telemetry, *,
                 ttl_days: int, batch_limit: int, idempotency_ttl_s: int, push_delay_s: float) -> None:
        self._telemetry = telemetry  # for @traced
        self._store = store
        self._coord = coordinator
        self._ttl_days = ttl_days
        self._batch_limit = batch_limit
        self._idempotency_ttl_s = idempotency_ttl_s
        self._push_delay_s = push_delay_s
        self.local_delivery: LocalDelivery | None = None  # set by the gateway (App wiring)
        store.on_commit = self._deliver_locally
        self._sent = telemetry.counter("obscura_messages_sent_total", "inserted message rows")
        self._notified = telemetry.counter("obscura_notifications_sent_total", "recipients per publish attempt")

    @traced("messages.send")
    async def send(self, sender_id: uuid.UUID, sender_device_id: uuid.UUID, key: uuid.UUID, body: bytes,
                   received_at: float | None = None) -> bytes:
        """Process a SendMessageRequest; returns the encoded SendMessageResponse (b"" = all fine).
        ``received_at``: time.perf_counter() when the request arrived (delivery latency metric)."""
        cache_key = idempotency_key(sender_device_id, key)
        try:
            cached = await self._coord.get_idempotent(cache_key)
        except CoordinationError:
            cached = None  # a cache failure is a miss (spec §2.10)
        if cached is not None:
            return cached
        try:
            submissions = _speedups.decode_send_message_request(body)
        except _speedups.DecodeError as exc:
            raise BadRequest(f"Invalid SendMessageRequest protobuf: {exc}") from None
        if len(submissions) > self._batch_limit:
            raise PayloadTooLarge()
        failures, rows, raw_ids = self._validate(submissions)
        if rows:
            try:
                done = await self._store.enqueue(sender_id, sender_device_id, self._ttl_days, rows, received_at)
            except SenderGone:
                raise Unauthorized() from None
            # Existence failures come after all structural ones, in request order (§5.1).
            failures.extend((raw, *_NOT_FOUND) for raw, row in zip(raw_ids, rows) if row[1] not in done.existing)
            if done.inserted:
                self._sent.add(len(done.inserted), {"status": "success"})
                response = _speedups.encode_send_message_response(failures)
                await self._after_commit({device for _, device in done.inserted}, done.served, cache_key, response)
                return response
        response = _speedups.encode_send_message_response(failures)
        try:
            await self._coord.put_idempotent(cache_key, response, self._idempotency_ttl_s)
        except CoordinationError:
            log.warning("could not cache the send response under its idempotency key")
        return response

    @staticmethod
    def _validate(submissions: Sequence[tuple[bytes, bytes, bytes]]):
        """Structural checks in request order (§5.1): (failures, rows to insert, their raw ids)."""
        failures: list[tuple[bytes, int, str]] = []
        rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bytes]] = []
        raw_ids: list[bytes] = []
        for submission_id, device_id, message in submissions:
            if len(submission_id) != 16:
                failures.append((submission_id, *_MALFORMED_SUBMISSION))
            elif len(device_id) != 16:
                failures.append((submission_id, *_MALFORMED_DEVICE))
            elif not message:
                failures.append((submission_id, *_MISSING))
            else:
                rows.append((new_message_id(), uuid_from_bytes(bytes(device_id)),
                             uuid_from_bytes(bytes(submission_id)), bytes(message)))
                raw_ids.append(bytes(submission_id))
        return failures, rows, raw_ids

    def _deliver_locally(self, commits: list[Committed]) -> Set[uuid.UUID]:
        """The store's on_commit: committed rows go straight to this node's idle sessions of their
        targets, no wake-up and no inbox read for them (performance.md). Called once per group
        commit, so a session gets one frame for everything that commit holds for it (and sends
        one ACK back), and before the send requests resume, so the write waits for none of their
        responses. Returns the devices served completely."""
        deliver = self.local_delivery
        if deliver is None:
            return frozenset()
        by_device: dict[uuid.UUID, list[PendingMessage]] = {}
        received: dict[uuid.UUID, float] = {}
        for sender_id, sender_device_id, rows, received_at, done in commits:
            if not done.inserted or done.created_at is None:
                continue
            contents = {message_id: content for message_id, _, _, content in rows}
            for message_id, device in done.inserted:
                by_device.setdefault(device, []).append(
                    PendingMessage(message_id, sender_id, sender_device_id, contents[message_id], done.created_at))
                if received_at is not None:
                    received[message_id] = received_at
        return deliver(by_device, received) if by_device else frozenset()

    async def _after_commit(self, devices: set[uuid.UUID], served: Set[uuid.UUID], cache_key: str,
                            response: bytes) -> None:
        """One wake-up (0x01) and one delayed push job per target device, and the response in
        the idempotency cache: one coordinator call (one Redis round trip for all three).

        With in-process coordination a device whose sessions here took the messages directly
        needs no wake-up (no other node exists); across nodes every device is woken (its
        sessions on other nodes, and a local one just re-reads nothing)."""
        woken = devices - served if self._coord.process_local else devices
        published, scheduled, cached = await self._coord.after_send(
            [(d, Event.MESSAGE_RECEIVED) for d in woken], devices, self._push_delay_s,
            (cache_key, response, self._idempotency_ttl_s))
        if published is None:
            self._notified.add(len(devices), {"status": "sent"})
        else:
            # The rows are committed: the devices get them on their next drain (decisions §4.11).
            self._notified.add(len(devices), {"status": "error"})
            log.warning("publishing %d wake-ups failed", len(devices))
        if scheduled is not None:
            log.warning("scheduling %d push jobs failed", len(devices))
        if cached is not None:
            log.warning("could not cache the send response under its idempotency key")

    # -- the gateway's side ------------------------------------------------------------------
    async def fetch_pending(self, device_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                            limit: int, skip: Sequence[uuid.UUID] = ()) -> list[PendingMessage]:
        """A page of the inbox after the cursor, without the ids in ``skip``."""
        return await self._store.fetch_pending(device_id, after, limit, skip)

    async def delete_acked(self, device_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> int:
        return await self._store.delete_acked(device_id, message_ids)

    async def cancel_push(self, device_ids: Sequence[uuid.UUID]) -> None:
        """Drop the pending push jobs of these devices (they are online and acknowledging)."""
        try:
            await self._coord.cancel_push(device_ids)
        except CoordinationError:
            log.warning("cancelling a push job failed")
