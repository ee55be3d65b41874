"""The node's garbage-collection policy (obscura/gcpolicy.py) and what it relies on: sessions,
relayed messages and refused requests leave no reference cycles behind, so the objects that
outlive a young collection can be frozen without leaking."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
import weakref

import pytest

from obscura.gcpolicy import YOUNG_THRESHOLD, GcPolicy
from obscura.telemetry import Telemetry
from tests.adversity.rawhttp import exchange, statuses
from tests.support.users import bearer, register_user
from tests.support.ws import connect, send, submission


class _Thing:
    """A tracked object a weakref can follow."""

    def __init__(self) -> None:
        self.other: _Thing | None = None


@contextlib.contextmanager
def _policy(**options):
    policy = GcPolicy(**options)
    policy.start(asyncio.get_running_loop())
    try:
        yield policy
    finally:
        policy.stop()


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_survivors_of_a_young_collection_are_frozen_and_still_freed_by_refcount():
    with _policy():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        kept = [_Thing() for _ in range(2000)]
        before = gc.get_freeze_count()
        gc.collect(0)
        assert gc.get_freeze_count() >= before + 2000  # out of every later pass
        probe = weakref.ref(kept[0])
        del kept
        assert probe() is None  # no collection needed: reference counting frees frozen objects
    assert gc.get_freeze_count() == 0  # stop() hands everything back to the collector


async def test_the_full_pass_reclaims_a_cycle_that_was_frozen():
    with _policy(full_interval_s=0) as policy:
        a, b = _Thing(), _Thing()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        gc.collect(0)  # alive now: frozen with the survivors
        del a, b
        gc.collect()
        assert gone() is not None  # a frozen cycle is out of the ordinary passes' reach
        assert policy.full_collection() >= 2
        assert gone() is None
        assert policy.full_collections == 1 and policy.last_found >= 2


async def test_the_full_pass_runs_on_its_interval():
    with _policy(full_interval_s=0.05) as policy:
        await _until(lambda: policy.full_collections >= 2)
    runs = policy.full_collections
    await asyncio.sleep(0.2)
    assert policy.full_collections == runs  # stop() cancelled the timer


async def test_start_twice_is_refused():
    with _policy() as policy:
        with pytest.raises(RuntimeError):
            policy.start(asyncio.get_running_loop())


# -- no reference cycles: with the collector off, everything the node leaves behind must have been
# freed by reference counting; what a SAVEALL pass finds of the node's own types would leak once
# frozen. (The test's own clients may make cycles: only server-side types are counted.)

_SERVER_TYPES = ("obscura.gateway.", "obscura.http.", "obscura.errors", "obscura.services.", "obscura.store.")


@contextlib.contextmanager
def _collector_off():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _server_garbage() -> dict[str, int]:
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found: dict[str, int] = {}
        for obj in gc.garbage:
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            if name.startswith(_SERVER_TYPES):
                found[name] = found.get(name, 0) + 1
        return found
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_sessions_that_relayed_and_acked_leave_no_cycles(app, http):
    sender, recipient = await register_user(http), await register_user(http)
    with _collector_off():
        clients = [await connect(http, recipient) for _ in range(3)]
        for i in range(5):
            await send(http, sender, submission(recipient.device_id, b"m%d" % i))
        for client in clients:
            envelopes = await client.envelopes_for(5)
            client.ack(*[e.id for e in envelopes])
        await asyncio.sleep(0.3)  # the ACK batchers have something to flush
        await clients[0].close()  # the client ends one
        clients[1].transport.disconnect()  # one vanishes
        await clients[1].wait_closed()
        for session in list(app.gateway._sessions):  # the server ends the last
            session.close()
        await clients[2].wait_closed()
        await _until(lambda: app.gateway.session_count == 0)
        await asyncio.sleep(0.2)  # the sessions' tasks finish their cancellation
        assert _server_garbage() == {}


async def test_refused_requests_leave_no_cycles(app, http):
    user = await register_user(http)
    raw = [
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",                                   # 404
        b"DELETE /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n",                         # 405
        b"GET /v1/gateway HTTP/1.1\r\nHost: x\r\n\r\n",                             # 400: no upgrade
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxx",     # 401: no token
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer forged\r\n"
        b"Content-Length: 2\r\n\r\nxx",                                              # 401: forged token
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + user.token.encode()
        + b"\r\nIdempotency-Key: " + str(uuid.uuid4()).encode()
        + b"\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\n\r\n\xff\xff\xff",  # 400
        b"GET /v1/gateway?ticket=nope HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",  # 401 ticket
        b"GARBAGE\r\n\r\n",                                                          # malformed
    ]
    with _collector_off():
        seen = []
        for request in raw:
            seen.extend(statuses(await exchange(app.port, request)))
        res = await http.post("/v1/devices/keys", json={"nope": 1}, headers=bearer(user.token))  # 4xx JSON
        seen.append(res.status_code)
        assert all(400 <= s < 500 for s in seen) and len(seen) == len(raw) + 1, seen
        await asyncio.sleep(0.1)
        assert _server_garbage() == {}


async def test_clean_full_passes_back_off_and_a_dirty_one_resets():
    with _policy(full_interval_s=10, max_interval_s=35) as policy:
        policy.full_collection()  # nothing to find: every object alive is frozen
        assert policy.next_interval_s == 20
        policy.full_collection()
        policy.full_collection()
        assert policy.next_interval_s == 35  # capped
        garbage = [_Thing() for _ in range(max(gc.get_freeze_count() // 50, 1000))]
        for a, b in zip(garbage, garbage[1:] + garbage[:1]):
            a.other = b  # one ring: more than 1 % of what the pass walks
        gc.collect(0)
        del garbage, a, b
        assert policy.full_collection() > 0
        assert policy.next_interval_s == 10


async def test_every_pass_is_timed_by_generation():
    telemetry = Telemetry()
    with _policy(telemetry=telemetry):
        gc.collect(0)
        gc.collect(0)
        gc.collect(2)
    young = telemetry.value("obscura_gc_pause_seconds", {"generation": "0"})
    full = telemetry.value("obscura_gc_pause_seconds", {"generation": "2"})
    assert young[0] == 2 and full[0] == 1 and young[1] > 0 and full[1] > 0  # (count, sum of seconds)
    runs = young[0]
    gc.collect(0)
    assert telemetry.value("obscura_gc_pause_seconds", {"generation": "0"})[0] == runs  # stopped


def test_a_served_node_runs_the_policy(tmp_path, server_process, database_url):
    """`obscura serve` installs the policy with the node's telemetry: its histogram is exported."""
    import httpx

    proc = server_process({"OBSCURA_DATABASE_URL": database_url, "OBSCURA_DATA_DIR": str(tmp_path / "d"),
                           "OBSCURA_TELEMETRY_PROMETHEUS_ENABLED": "true"})
    proc.wait_ready(timeout_s=60)
    text = httpx.get(f"http://127.0.0.1:{proc.mgmt_port}/metrics", timeout=10).text
    assert "# TYPE obscura_gc_pause_seconds histogram" in text
    assert proc.terminate() == 0, proc.output()
