"""A live in-process node on its own thread, for synchronous clients (schemathesis, raw sockets)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from obscura.app import App
from obscura.config import Settings


@contextmanager
def app_in_thread(settings: Settings) -> Iterator[App]:
    """Start an App on a private event loop in a daemon thread; stop it on exit."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["app"] = App(settings)
            loop.run_until_complete(box["app"].start())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            box["error"] = exc
        started.set()
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=run, name="obscura-live", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in box:
        raise box["error"]
    try:
        yield box["app"]
    finally:
        asyncio.run_coroutine_threadsafe(box["app"].stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
