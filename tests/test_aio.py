"""obscura/aio.py: a swallowed cancellation still stops a loop; LoopBound looks its loop up once."""

from __future__ import annotations

import asyncio

import pytest

from obscura.aio import LoopBound, raise_if_cancelling


async def test_a_swallowed_cancel_still_ends_the_loop():
    give_up = False

    async def loop_that_swallows():
        while not give_up:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # what a library may do: report it as an error
                try:
                    raise TimeoutError("lost cancel") from None
                except Exception:  # noqa: BLE001 - the loop's own "log and carry on"
                    raise_if_cancelling()

    task = asyncio.create_task(loop_that_swallows())
    await asyncio.sleep(0.03)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    give_up = True  # without the helper the loop spins on: let it end either way
    await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


async def test_nothing_happens_without_a_cancel():
    raise_if_cancelling()  # no exception outside a cancelled task


async def test_a_cancel_swallowed_without_an_error_ends_the_loop_after_its_cycle():
    give_up = False

    async def quietly_swallowing_call():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            return None  # a library that treats the cancel as "no result"

    async def loop():
        while not give_up:
            await quietly_swallowing_call()
            raise_if_cancelling()
            await asyncio.sleep(0)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.03)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    give_up = True
    await asyncio.wait({task}, timeout=2)
    assert done and task.cancelled()


async def test_loop_bound_looks_the_running_loop_up_once(monkeypatch):
    class Owner(LoopBound):
        pass

    first, second = Owner(), Owner()
    assert first.bound_loop is asyncio.get_running_loop()

    def no_more_lookups():
        raise AssertionError("looked up again")

    monkeypatch.setattr(asyncio, "get_running_loop", no_more_lookups)
    assert first.bound_loop.is_running()   # a plain attribute now
    with pytest.raises(AssertionError, match="looked up again"):
        second.bound_loop   # each object looks up its own, once
