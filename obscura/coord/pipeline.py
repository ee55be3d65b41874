"""One pipelining connection for the per-request Redis commands, with one pipeline in flight.

The send path's publishes, push-queue updates and idempotency reads and writes of concurrent
requests share one write and one round trip on the lean RESP client (redis-py costs ~18 us of
client CPU per pipelined command, performance.md). Commands queued while a pipeline waits for its
replies go out together when it is done: under load most loop ticks found one in flight, and each
had cost a write, a read and a wake-up of Redis of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from obscura.aio import LoopBound
from obscura.coord.base import CoordinationError
from obscura.coord.resp import RespError, RespProtocol, encode_command, open_connection

__all__ = ["CommandPipeline"]


class CommandPipeline(LoopBound):
    """Queue encoded commands; they go out in one pipeline with what else is queued meanwhile.

    The connection is opened on first use and replaced when it drops; ``close()`` aborts it and
    fails what is queued. Only idempotent commands come here: a pipeline whose connection
    dropped is sent again once.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._command_timeout_s = timeout_s
        self._waiting: list[tuple[Sequence[tuple | bytes], asyncio.Future]] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task] = set()
        self._hot: RespProtocol | None = None
        self._hot_lock = asyncio.Lock()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        for task in list(self._in_flight):
            task.cancel()
        hot, self._hot = self._hot, None
        if hot is not None:
            hot.abort()

    def queue(self, commands: Sequence[tuple | bytes]) -> asyncio.Future[list[Any]]:
        """Queue commands (argument tuples, or bytes already encoded such as ``encode_publish``'s).
        The future gets the replies of ``commands``, or CoordinationError when any of them failed."""
        loop = self.bound_loop
        future = loop.create_future()
        self._waiting.append((commands, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return future

    def _start(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._waiting:
            return  # the pipeline in flight starts the next one when it is done (_done)
        batch, self._waiting = self._waiting, []
        task = self.bound_loop.create_task(self._run(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._start()  # what was queued meanwhile; after close() it fails in connection()

    async def _run(self, batch: list) -> None:
        try:
            commands = [args for group, _ in batch for args in group]
            payload = b"".join([args if type(args) is bytes else encode_command(args) for args in commands])
            results = await self._send(payload, len(commands))
        except BaseException as exc:  # noqa: BLE001 - every queued caller gets the failure
            err = exc if isinstance(exc, CoordinationError) else CoordinationError(f"redis: {type(exc).__name__}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        start = 0
        for group, future in batch:
            replies, start = results[start:start + len(group)], start + len(group)
            if future.done():
                continue
            failed = next((r for r in replies if isinstance(r, BaseException)), None)
            if failed is not None:
                future.set_exception(CoordinationError(f"redis: {type(failed).__name__}"))
            else:
                future.set_result(replies)

    async def _send(self, payload: bytes, count: int) -> list[Any]:
        """Send ``count`` encoded commands on the hot connection; their replies (an error reply
        as its RespError). A dropped connection is replaced and the pipeline sent once more. The
        whole call, reconnecting included, gets the command timeout; a connection that has not
        answered by then is dropped (its state is unknown)."""
        proto: RespProtocol | None = None
        try:
            async with asyncio.timeout(self._command_timeout_s):
                for attempt in (1, 2):
                    proto = await self.connection()
                    try:
                        return await proto.send_batch(payload, count)
                    except ConnectionError:  # dropped before every reply came (or closed since we looked)
                        if attempt == 2:
                            raise CoordinationError("redis: ConnectionError") from None
        except TimeoutError:
            if proto is not None:
                proto.abort()
            raise CoordinationError("redis: TimeoutError") from None
        raise AssertionError("unreachable")

    async def connection(self) -> RespProtocol:
        proto = self._hot
        if proto is not None and not proto.is_closed:
            return proto
        async with self._hot_lock:
            proto = self._hot
            if proto is None or proto.is_closed:
                if self._closed:
                    raise CoordinationError("coordinator is not started or already closed")
                try:
                    proto = await open_connection(self._url, self._command_timeout_s)
                except (OSError, RespError, TimeoutError) as exc:
                    raise CoordinationError(f"redis: {type(exc).__name__}") from exc
                if self._closed:  # closed while we connected: do not leave the link open
                    proto.abort()
                    raise CoordinationError("coordinator is not started or already closed")
                self._hot = proto
            return proto
