"""The push worker: lease due jobs, wake devices through the provider, retry, drop dead tokens (spec §6.3)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from obscura.aio import raise_if_cancelling
from obscura.coord.base import Coordinator
from obscura.push.base import PushProvider, PushResult, PushTarget
from obscura.services.push_tokens import PushTokenService
from obscura.telemetry import Telemetry

if TYPE_CHECKING:
    from obscura.config import Settings

__all__ = ["PushWorker"]

log = logging.getLogger("obscura.workers.push")


class PushWorker:
    """Every ``interval_s``: lease up to the free share of ``concurrency`` due jobs, look their
    tokens up in one query, and send with at most ``concurrency`` pushes in flight.

    Success and unregistered tokens complete the job; quota and other failures leave it leased,
    so it comes back when the lease (``visibility_s``) ends, on whichever node leases it first.
    Unregistered tokens go through a bounded queue and are deleted in batches: at
    ``cleanup_batch_size``, every ``cleanup_interval_s`` and once more at shutdown.
    """

    def __init__(self, coordinator: Coordinator, tokens: PushTokenService, provider: PushProvider,
                 telemetry: Telemetry, *, interval_s: float, concurrency: int, visibility_s: float,
                 cleanup_interval_s: float, cleanup_batch_size: int, cleanup_capacity: int,
                 db_timeout_s: float = 10.0, shutdown_timeout_s: float = 5.0) -> None:
        self._coord = coordinator
        self._tokens = tokens
        self.provider = provider
        self.interval_s = float(interval_s)
        self.concurrency = concurrency
        self.visibility_s = float(visibility_s)
        self._cleanup_interval_s = float(cleanup_interval_s)
        self._cleanup_batch_size = cleanup_batch_size
        self._invalid: asyncio.Queue[str] = asyncio.Queue(maxsize=cleanup_capacity)
        self._batch: list[str] = []
        self._db_timeout_s = db_timeout_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._permits = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.peak_in_flight = 0
        self._sent = telemetry.counter("obscura_push_notifications_sent_total", "pushes accepted by the provider")
        self._errors = telemetry.counter("obscura_push_notification_errors_total", "retryable push failures")
        self._invalid_total = telemetry.counter("obscura_push_invalid_tokens_total", "tokens reported unregistered")

    @classmethod
    def from_settings(cls, settings: Settings, coordinator: Coordinator, tokens: PushTokenService,
                      provider: PushProvider, telemetry: Telemetry) -> PushWorker:
        s = settings
        return cls(coordinator, tokens, provider, telemetry, interval_s=s.notifications_worker_interval_secs,
                   concurrency=s.notifications_worker_concurrency,
                   visibility_s=s.notifications_visibility_timeout_secs,
                   cleanup_interval_s=s.notifications_invalid_token_cleanup_interval_secs,
                   cleanup_batch_size=s.notifications_invalid_token_cleanup_batch_size,
                   cleanup_capacity=s.notifications_invalid_token_cleanup_channel_capacity,
                   db_timeout_s=float(s.server_request_timeout_secs),
                   shutdown_timeout_s=float(s.server_shutdown_timeout_secs))

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start the loops; the caller owns the task. Cancelling it stops sending, flushes the
        collected invalid tokens and closes the provider."""
        if self._task is not None:
            raise RuntimeError("push worker already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="obscura-push-worker")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        cleanup = asyncio.get_running_loop().create_task(self._cleanup_loop(), name="obscura-push-token-cleanup")
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a failing store costs one attempt per interval
                    raise_if_cancelling()
                    log.warning("push worker cycle failed: %s: %s", type(exc).__name__, str(exc)[:200])
                # A tick can also return normally with the cancel swallowed inside a client
                # library (seen with ten workers racing on one Redis): stop here, not a tick later.
                raise_if_cancelling()
                await asyncio.sleep(self.interval_s)
        finally:
            # Cancelled sends keep their (leased) jobs: they are retried when the lease ends.
            pending = [*self._in_flight, cleanup]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._final_flush()
            await self.provider.close()

    # -- one poll (spec §6.3 steps 1-4) --------------------------------------------------------
    async def tick(self) -> int:
        """Lease and dispatch once; returns how many sends were started."""
        available = self.concurrency - len(self._in_flight)
        if available <= 0:
            return 0
        leased = await self._coord.lease_push_jobs(available, self.visibility_s)
        if not leased:
            return 0
        async with asyncio.timeout(self._db_timeout_s):
            targets = await self._tokens.targets(leased)
        with_token = {t.device_id for t in targets}
        without = [d for d in leased if d not in with_token]
        if without:
            await self._coord.complete_push(without)  # nothing to send to: drop the job
        for target in targets:
            await self._permits.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(target))
            self._in_flight.add(task)
            self.peak_in_flight = max(self.peak_in_flight, len(self._in_flight))
            task.add_done_callback(self._finished)
        return len(targets)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._permits.release()

    async def wait_idle(self) -> None:
        """Wait until every started send has finished (tests, shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _deliver(self, target: PushTarget) -> None:
        try:
            result = await self.provider.send(target)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a provider bug must not kill the worker; retried later
            log.exception("push provider failed for device %s", target.device_id)
            result = PushResult.OTHER
        try:
            await self._settle(target, result)
        except Exception as exc:  # noqa: BLE001 - the job stays leased and comes back
            log.warning("completing the push job of device %s failed: %s", target.device_id, type(exc).__name__)

    async def _settle(self, target: PushTarget, result: PushResult) -> None:
        if result is PushResult.SUCCESS:
            await self._coord.complete_push([target.device_id])
            self._sent.add(1)
        elif result is PushResult.UNREGISTERED:
            await self._coord.complete_push([target.device_id])
            self._invalid_total.add(1)
            self._report_invalid(target)
        else:
            self._errors.add(1, {"reason": result.value})

    def _report_invalid(self, target: PushTarget) -> None:
        try:
            self._invalid.put_nowait(target.token)
        except asyncio.QueueFull:
            # The token stays; the next push to it reports it again.
            log.warning("invalid-token queue full; token of device %s kept for now", target.device_id)

    # -- invalid-token cleanup (spec §6.3 step 5) ----------------------------------------------
    async def _cleanup_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + self._cleanup_interval_s
        while True:
            try:
                async with asyncio.timeout_at(next_flush):
                    self._batch.append(await self._invalid.get())
                if len(self._batch) < self._cleanup_batch_size:
                    continue
            except TimeoutError:
                next_flush = loop.time() + self._cleanup_interval_s
            await self._flush()

    async def _flush(self) -> int:
        batch, self._batch = self._batch, []
        if not batch:
            return 0
        try:
            async with asyncio.timeout(self._db_timeout_s):
                deleted = await self._tokens.delete_invalid(batch)
        except asyncio.CancelledError:
            self._batch = batch + self._batch  # keep them for the final flush
            raise
        except Exception as exc:  # noqa: BLE001 - dropped: a still-dead token is reported again
            log.warning("deleting %d invalid push tokens failed: %s", len(batch), type(exc).__name__)
            return 0
        log.info("deleted %d invalid push token(s)", deleted)
        return deleted

    async def _final_flush(self) -> None:
        while not self._invalid.empty():
            self._batch.append(self._invalid.get_nowait())
        try:
            async with asyncio.timeout(self._shutdown_timeout_s):
                await self._flush()
        except (TimeoutError, asyncio.CancelledError):
            log.warning("final invalid-token flush did not finish")
