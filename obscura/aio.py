"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelling"]


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into an ordinary error.

    On Python 3.11 a cancel landing while an ``asyncio.timeout`` inside a client library expires
    can surface as TimeoutError (redis-py then reports a connection error); a loop that logs
    errors and carries on would never stop, and whoever awaits it would hang.
    ``Task.cancelling()`` still says the task was asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
