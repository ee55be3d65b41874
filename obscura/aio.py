"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import functools

__all__ = ["LoopBound", "raise_if_cancelling"]


class LoopBound:
    """Base for objects that belong to one event loop (they hold its futures, tasks or pool):
    ``self.bound_loop`` is that loop, looked up on first use and then a plain attribute.

    On Python 3.11 ``asyncio.get_running_loop()`` makes a getpid() system call every time (about
    2 us on the 2-core VMs of performance.md): on a path that runs per request or per frame,
    such as a group commit's enqueue, that is a measurable share of a message."""

    @functools.cached_property
    def bound_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into an ordinary error.

    On Python 3.11 a cancel landing while an ``asyncio.timeout`` inside a client library expires
    can surface as TimeoutError (redis-py then reports a connection error), or vanish with the
    call returning normally (seen with ten push workers racing on one Redis); a loop that carries
    on would never stop, and whoever awaits it would hang. ``Task.cancelling()`` still says the
    task was asked to stop: call this after each cycle and in error branches."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
