"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelling"]


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
