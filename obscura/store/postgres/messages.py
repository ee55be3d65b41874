"""Pending messages in PostgreSQL: batched insert, paged fetch, batched ACK delete, cleanup (spec §5)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Sequence

import asyncpg

from obscura.aio import LoopBound
from obscura.services.messages import CommitListener, Committed, Enqueued, PendingMessage, SenderGone
from obscura.store.postgres.pool import Database

__all__ = ["MessageRepo"]

log = logging.getLogger("obscura.store.messages")

# One statement, one implicit transaction (spec §5.1): lock the targets that exist (so a target
# deleted meanwhile cannot fail the foreign key: only a deleted sender can), insert the rows for
# them, skip duplicates per sending device, and report both sets. Rows of several concurrent send
# requests go into one statement (group commit, see MessageRepo.enqueue).
_INSERT = """
WITH t AS (SELECT id FROM devices WHERE id = ANY($1::uuid[]) FOR KEY SHARE),
m AS (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::bytea[])
      AS m(id, sender_id, sender_device_id, device_id, submission_id, content)),
ins AS (
    INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, created_at, expires_at)
    SELECT m.id, m.sender_id, m.sender_device_id, m.device_id, m.submission_id, m.content, now(),
           now() + make_interval(days => $8)
    FROM m JOIN t ON t.id = m.device_id
    ON CONFLICT (sender_device_id, submission_id) DO NOTHING
    RETURNING id
)
SELECT true AS target, id, now() AS at FROM t UNION ALL SELECT false, id, now() FROM ins
"""

# ACK deletes commit without waiting for their WAL flush: synchronous_commit is off for that one
# transaction (set_config(..., true) is SET LOCAL; the commit reads it before it is reverted).
# Under load every commit queues behind the WAL flushes of the others (pg_stat_activity showed
# the send INSERTs waiting on WALWrite behind the sessions' DELETEs), so the deletes no longer
# lengthen the sends' commits. What a crash can cost: the deletes of the last few hundred
# milliseconds (3 x wal_writer_delay at most); those messages are delivered again on the next
# connection, as after any ACK that never arrived (delivery is at-least-once, spec §3.5). Sends
# stay durable: their loss would lose messages.
# The ACKs of several sessions go into one statement ($2: the device of each id in $1, so a
# session deletes only its own device's rows); the PK index finds the rows (id = ANY), the pairs
# filter them. One row per device with its count.
_DELETE_ACKED = """
WITH lazy AS (SELECT set_config('synchronous_commit', 'off', true)),
gone AS (DELETE FROM messages WHERE id = ANY($1::uuid[])
         AND (id, device_id) IN (SELECT a.id, a.device_id FROM unnest($1::uuid[], $2::uuid[]) AS a(id, device_id))
         RETURNING device_id)
SELECT gone.device_id, count(*) AS n FROM gone, lazy GROUP BY gone.device_id
"""

_FETCH_FIRST = """
SELECT id, sender_id, sender_device_id, content, created_at FROM messages
WHERE device_id = $1 AND expires_at > now()
ORDER BY created_at, id LIMIT $2
"""

# A session re-reads a lookback window behind its cursor (late commits, spec §13 item 13) in which
# almost every row is one it has sent and not yet seen deleted: it names those ($5, the "skip"
# ids), so they are not sent back, decoded and dropped again on every wake-up.
_FETCH_AFTER = """
SELECT id, sender_id, sender_device_id, content, created_at FROM messages
WHERE device_id = $1 AND expires_at > now() AND (created_at, id) > ($2, $3) AND NOT (id = ANY($5::uuid[]))
ORDER BY created_at, id LIMIT $4
"""

# The next page of several inboxes at once (one per session that woke up in the same tick). A
# first page uses the smallest cursor, which sorts before every row.
_FETCH_MANY = """
SELECT c.n, m.id, m.sender_id, m.sender_device_id, m.content, m.created_at
FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $6::int[], $7::int[])
     WITH ORDINALITY AS c(device_id, after_at, after_id, skip_from, skip_to, n)
CROSS JOIN LATERAL (
    SELECT id, sender_id, sender_device_id, content, created_at FROM messages
    WHERE device_id = c.device_id AND expires_at > now() AND (created_at, id) > (c.after_at, c.after_id)
      AND NOT (id = ANY(($5::uuid[])[c.skip_from:c.skip_to]))
    ORDER BY created_at, id LIMIT $4
) m
"""
_MIN_CURSOR = (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), uuid.UUID(int=0))

_PRUNE_INBOXES = """
DELETE FROM messages WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY device_id ORDER BY created_at DESC, id DESC) AS rank
        FROM messages
    ) ranked WHERE rank > $1 LIMIT $2
)
"""


def _settle(send: _Send, result=None, *, exc: BaseException | None = None) -> None:
    if send.future.done():
        return  # the request gave up (timeout); its rows may still have been committed
    if exc is not None:
        send.future.set_exception(exc)
    else:
        send.future.set_result(result)


def _fail_all(futures: list[asyncio.Future], exc: BaseException) -> None:
    """Hand one statement's failure to everyone waiting on it; a cancellation goes on up."""
    for future in futures:
        if not future.done():
            future.set_exception(exc)
    if isinstance(exc, asyncio.CancelledError):
        raise exc


def _order(m: PendingMessage) -> tuple[dt.datetime, uuid.UUID]:
    return m.created_at, m.id


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class _Send:
    __slots__ = ("sender_id", "sender_device_id", "ttl_days", "rows", "received_at", "future")

    def __init__(self, sender_id, sender_device_id, ttl_days, rows, received_at, future) -> None:
        self.sender_id, self.sender_device_id, self.ttl_days = sender_id, sender_device_id, ttl_days
        self.rows, self.received_at, self.future = rows, received_at, future


class MessageRepo(LoopBound):
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queued: list[_Send] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task] = set()
        self._fetches: dict[int, list] = {}
        self._fetch_scheduled = False
        self._deletes: list[tuple[uuid.UUID, Sequence[uuid.UUID], asyncio.Future]] = []
        self._delete_scheduled = False
        self.on_commit: CommitListener | None = None  # MessageService's direct delivery

    async def existing_devices(self, device_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        async with self._db.acquire() as conn:
            rows = await conn.fetch("SELECT id FROM devices WHERE id = ANY($1::uuid[])", list(device_ids))
        return {r["id"] for r in rows}

    async def enqueue(self, sender_id: uuid.UUID, sender_device_id: uuid.UUID, ttl_days: int,
                      rows: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, bytes]],
                      received_at: float | None = None) -> Enqueued:
        """Insert (message id, target device, submission id, content) rows, durably committed.

        Returns the targets that exist, (message id, target device) of every inserted row, their
        ``created_at`` (one value: the statement's transaction time) and the devices on_commit
        served. Rows for unknown devices and duplicates of an earlier submission by this device
        are not inserted. Group commit: every send queued during one event-loop tick shares one
        statement and one commit (performance.md: one round trip and one WAL flush instead of
        one per request); on_commit sees all of them at once, before any caller resumes (also
        the rows of a caller that has given up: they are committed).
        """
        loop = self.bound_loop
        send = _Send(sender_id, sender_device_id, ttl_days, rows, received_at, loop.create_future())
        self._queued.append(send)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        return await send.future

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        by_ttl: dict[int, list[_Send]] = {}
        for send in queued:
            by_ttl.setdefault(send.ttl_days, []).append(send)
        for batch in by_ttl.values():
            self._spawn(self._flush(batch))

    def _spawn(self, coro) -> None:
        """A statement's task, referenced until it is done."""
        task = self.bound_loop.create_task(coro)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Send]) -> None:
        try:
            results = await self._insert(batch)
        except asyncpg.ForeignKeyViolationError:
            if len(batch) == 1:
                return _settle(batch[0], exc=SenderGone())
            for send in batch:  # one sender is gone: find out whose rows fail, one statement each
                try:
                    _settle(send, self._committed([send], await self._insert([send]))[0])
                except asyncpg.ForeignKeyViolationError:
                    _settle(send, exc=SenderGone())
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                    _settle(send, exc=exc)
            return
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the failure
            for send in batch:
                _settle(send, exc=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for send, result in zip(batch, self._committed(batch, results)):
            _settle(send, result)

    def _committed(self, batch: list[_Send], results: list[Enqueued]) -> list[Enqueued]:
        """Tell on_commit; the results with the devices it served."""
        listener = self.on_commit
        if listener is None:
            return results
        try:
            served = listener([Committed(s.sender_id, s.sender_device_id, s.rows, s.received_at, r)
                               for s, r in zip(batch, results)])
        except Exception:  # noqa: BLE001 - the rows are committed: the wake-ups deliver them
            log.warning("direct delivery after a commit failed", exc_info=True)
            return results
        return [r._replace(served=served) for r in results] if served else results

    async def _insert(self, batch: list[_Send]) -> list[Enqueued]:
        ids, senders, sender_devices, targets, submissions, contents = [], [], [], [], [], []
        for send in batch:
            for message_id, target, submission, content in send.rows:
                ids.append(message_id)
                senders.append(send.sender_id)
                sender_devices.append(send.sender_device_id)
                targets.append(target)
                submissions.append(submission)
                contents.append(content)
        async with self._db.acquire() as conn:
            found = await conn.fetch(_INSERT, list(set(targets)), ids, senders, sender_devices, targets,
                                     submissions, contents, batch[0].ttl_days)
        existing = {r["id"] for r in found if r["target"]}
        inserted = {r["id"] for r in found if not r["target"]}
        created_at = found[0]["at"] if found else None  # now(): every row of the statement has it
        return [Enqueued({t for _, t, _, _ in send.rows if t in existing},
                         [(message_id, t) for message_id, t, _, _ in send.rows if message_id in inserted],
                         created_at) for send in batch]

    async def fetch_pending(self, device_id: uuid.UUID, after: tuple[dt.datetime, uuid.UUID] | None,
                            limit: int, skip: Sequence[uuid.UUID] = ()) -> list[PendingMessage]:
        """The next page of a device's inbox in (created_at, id) order after the cursor (§3.4),
        leaving out the ids in ``skip`` (rows the caller already has).

        Pages asked for during one event-loop tick (sessions woken by the same sends) are read
        with one statement."""
        loop = self.bound_loop
        future = loop.create_future()
        self._fetches.setdefault(limit, []).append((device_id, after, skip, future))
        if not self._fetch_scheduled:
            self._fetch_scheduled = True
            loop.call_soon(self._start_fetches)
        return await future

    def _start_fetches(self) -> None:
        self._fetch_scheduled = False
        queued, self._fetches = self._fetches, {}
        for limit, batch in queued.items():
            self._spawn(self._fetch_batch(batch, limit))

    async def _fetch_batch(self, batch: list, limit: int) -> None:
        try:
            pages = await self._read_pages([(d, a, skip) for d, a, skip, _ in batch], limit)
        except BaseException as exc:  # noqa: BLE001 - every waiting session gets the failure
            return _fail_all([future for *_, future in batch], exc)
        for (*_, future), page in zip(batch, pages):
            if not future.done():
                future.set_result(page)

    async def _read_pages(self, cursors: list, limit: int) -> list[list[PendingMessage]]:
        async with self._db.acquire() as conn:
            if len(cursors) == 1:
                device_id, after, skip = cursors[0]
                if after is None:
                    rows = await conn.fetch(_FETCH_FIRST, device_id, limit)
                else:
                    rows = await conn.fetch(_FETCH_AFTER, device_id, after[0], after[1], limit, list(skip))
                return [[PendingMessage(r["id"], r["sender_id"], r["sender_device_id"], r["content"],
                                        r["created_at"]) for r in rows]]
            afters = [a if a is not None else _MIN_CURSOR for _, a, _ in cursors]
            skips: list[uuid.UUID] = []
            skip_from, skip_to = [], []
            for *_, skip in cursors:  # one flat array; each cursor's ids are its slice [from:to] (1-based)
                skip_from.append(len(skips) + 1)
                skips.extend(skip)
                skip_to.append(len(skips))
            rows = await conn.fetch(_FETCH_MANY, [d for d, _, _ in cursors], [a[0] for a in afters],
                                    [a[1] for a in afters], limit, skips, skip_from, skip_to)
        pages: list[list[PendingMessage]] = [[] for _ in cursors]
        for r in rows:
            pages[r["n"] - 1].append(PendingMessage(r["id"], r["sender_id"], r["sender_device_id"], r["content"],
                                                    r["created_at"]))
        for page in pages:
            page.sort(key=_order)
        return pages

    async def delete_acked(self, device_id: uuid.UUID, message_ids: Sequence[uuid.UUID]) -> int:
        """Delete ACKed rows of this device only: a session cannot delete others' messages (§3.5).
        Returns how many went. The deletes asked for during one loop tick share one statement
        (the sessions' ACK timers fire together: gateway/acks.py), one per device at most; it
        does not wait for its WAL flush (see _DELETE_ACKED)."""
        loop = self.bound_loop
        future = loop.create_future()
        self._deletes.append((device_id, message_ids, future))
        if not self._delete_scheduled:
            self._delete_scheduled = True
            loop.call_soon(self._start_deletes)
        return await future

    def _start_deletes(self) -> None:
        self._delete_scheduled = False
        batch, later, devices = [], [], set()
        for item in self._deletes:
            (later if item[0] in devices else batch).append(item)
            devices.add(item[0])
        self._deletes = later
        if later:  # a second session of a device: its own statement, right after
            self._delete_scheduled = True
            self.bound_loop.call_soon(self._start_deletes)
        self._spawn(self._delete_batch(batch))

    async def _delete_batch(self, batch: list) -> None:
        ids: list[uuid.UUID] = []
        owners: list[uuid.UUID] = []
        for device_id, message_ids, _ in batch:
            ids.extend(message_ids)
            owners.extend([device_id] * len(message_ids))
        try:
            async with self._db.acquire() as conn:
                rows = await conn.fetch(_DELETE_ACKED, ids, owners)
        except BaseException as exc:  # noqa: BLE001 - every waiting session gets the failure
            return _fail_all([future for *_, future in batch], exc)
        counts = {r["device_id"]: r["n"] for r in rows}
        for device_id, _, future in batch:
            if not future.done():
                future.set_result(counts.get(device_id, 0))

    async def delete_expired(self, limit: int) -> int:
        async with self._db.acquire() as conn:
            return _count(await conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE expires_at < now() LIMIT $1)",
                limit))

    async def prune_inboxes(self, max_per_device: int, limit: int) -> int:
        """Keep each device's newest ``max_per_device`` messages; at most ``limit`` rows per call."""
        async with self._db.acquire() as conn:
            return _count(await conn.execute(_PRUNE_INBOXES, max_per_device, limit))
