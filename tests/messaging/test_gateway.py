"""The WebSocket gateway end to end: tickets, delivery, ACKs, batching, heartbeat, prekey status
(spec §3; upstream integration_gateway*, _messaging, _batching, _blocking, _limits, _prekey_signaling)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import picows
import pytest

from obscura._speedups import uuid7
from tests.fixtures.server import running_app
from tests.support.users import bearer, register, register_user
from tests.support.ws import WsClient, connect, get_ticket, send, send_text, submission


@pytest.fixture
async def node_factory(settings_factory):
    """Start extra nodes with overrides; all are stopped at teardown."""
    stack = []

    async def make(**overrides):
        cm = running_app(settings_factory(**overrides))
        node = await cm.__aenter__()
        stack.append(cm)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=10)
        stack.append(client)
        return node, client

    yield make
    for item in reversed(stack):
        await item.__aexit__(None, None, None)


async def _pending(app, device_id) -> int:
    async with app.database.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", device_id)


async def _eventually(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


# -- tickets ---------------------------------------------------------------------------------------

async def test_ticket_is_single_use_and_bound_to_the_device(http, app):
    bob = await register_user(http)
    ticket = await get_ticket(http, bob)
    assert await app.coordinator.take_ticket(ticket) == str(bob.device_id).encode()
    with pytest.raises(picows.WSError):
        await picows.ws_connect(WsClient, f"ws://127.0.0.1:{app.port}/v1/gateway?ticket={ticket}")


async def test_missing_unknown_and_token_tickets(http, app):
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    res = await http.get(f"/v1/gateway?ticket={uuid.uuid4()}", headers=upgrade)
    assert res.status_code == 401 and res.json() == {"error": "Unauthorized"}
    res = await http.get("/v1/gateway?token=invalid", headers=upgrade)
    assert res.status_code == 400
    res = await http.post("/v1/gateway/ticket")
    assert res.status_code == 401
    user = await register(http)
    res = await http.post("/v1/gateway/ticket", headers=bearer(user.user_token))
    assert res.status_code == 403


# -- delivery --------------------------------------------------------------------------------------

async def test_messaging_flow(http):
    alice, bob = await register_user(http), await register_user(http)
    client = await connect(http, bob)
    try:
        await send_text(http, alice, bob, b"Hello World")
        env = await client.next_envelope()
        assert env.message == b"Hello World"
        assert env.sender_id == alice.user_id.bytes and env.sender_device_id == alice.device_id.bytes
        assert len(env.id) == 16 and env.timestamp > 0
        client.ack(env.id)
    finally:
        await client.close()


async def test_backlog_of_125_arrives_in_order_then_acks_delete(http, app):
    alice, bob = await register_user(http), await register_user(http)
    for i in range(125):
        await send_text(http, alice, bob, b"msg_%d" % i)
    client = await connect(http, bob)
    try:
        envs = await client.envelopes_for(125)
        assert [e.message for e in envs] == [b"msg_%d" % i for i in range(125)]
        assert len({e.id for e in envs}) == 125
        client.ack(*[e.id for e in envs])
        await _eventually(lambda: _count_is(app, bob.device_id, 0))
    finally:
        await client.close()


async def _count_is(app, device_id, n) -> bool:
    return await _pending(app, device_id) == n


async def test_order_preserved_across_1000_backlog(http, app):
    alice, bob = await register_user(http), await register_user(http)
    for start in range(0, 1000, 100):
        await send(http, alice, *[submission(bob.device_id, b"%04d" % i) for i in range(start, start + 100)])
    client = await connect(http, bob)
    try:
        envs = await client.envelopes_for(1000)
        assert [e.message for e in envs] == [b"%04d" % i for i in range(1000)]
    finally:
        await client.close()


async def test_multi_device_delivery_targets_one_device(http):
    alice = await register_user(http)
    bob1 = await register_user(http)
    from tests.support.users import add_device, TestUser
    bob2 = TestUser(bob1.username, bob1.user_id, bob1.user_token, bob1.refresh_token)
    await add_device(http, bob2)
    c1, c2 = await connect(http, bob1), await connect(http, bob2)
    try:
        await send_text(http, alice, bob2, b"for device 2")
        assert (await c2.next_envelope()).message == b"for device 2"
        assert await c1.no_envelope_within(0.5)
    finally:
        await c1.close()
        await c2.close()


async def test_ack_batching_deletes_after_flush(node_factory):
    node, http = await node_factory(ws_ack_batch_size=5, ws_ack_flush_interval_ms=1000)
    alice, bob = await register_user(http), await register_user(http)
    for i in range(3):
        await send_text(http, alice, bob, b"m%d" % i)
    client = await connect(http, bob)
    try:
        envs = await client.envelopes_for(3)
        client.ack(*[e.id for e in envs])
        await asyncio.sleep(0.2)
        assert await _pending(node, bob.device_id) == 3
        await _eventually(lambda: _count_is(node, bob.device_id, 0), 5)
    finally:
        await client.close()


async def test_acks_flushed_on_disconnect(node_factory):
    node, http = await node_factory(ws_ack_batch_size=10, ws_ack_flush_interval_ms=10000)
    alice, bob = await register_user(http), await register_user(http)
    for i in range(5):
        await send_text(http, alice, bob, b"m%d" % i)
    client = await connect(http, bob)
    envs = await client.envelopes_for(5)
    for env in envs:
        client.ack(env.id)
    await client.ping_pong()
    await client.close()
    await _eventually(lambda: _count_is(node, bob.device_id, 0), 5)
    again = await connect(http, bob)
    try:
        assert await again.no_envelope_within(1.0)
    finally:
        await again.close()


async def test_ack_cannot_delete_another_devices_message(http, app):
    alice, bob, eve = await register_user(http), await register_user(http), await register_user(http)
    await send_text(http, alice, bob, b"secret")
    bob_client = await connect(http, bob)
    env = await bob_client.next_envelope()
    await bob_client.close()
    eve_client = await connect(http, eve)
    try:
        eve_client.ack(env.id)
        await eve_client.ping_pong()
        await asyncio.sleep(0.8)
        assert await _pending(app, bob.device_id) == 1
    finally:
        await eve_client.close()


async def test_bad_acks_and_garbage_frames_keep_the_session(node_factory):
    node, http = await node_factory(ws_ack_buffer_size=5, ws_ack_batch_size=1)
    bob = await register_user(http)
    client = await connect(http, bob)
    try:
        for _ in range(15):
            client.ack(uuid.uuid4().bytes)
        client.ack(b"\x01" * 5, b"\x02" * 32)
        client.transport.send(picows.WSMsgType.BINARY, b"\xff\xff\xff")      # undecodable
        client.transport.send(picows.WSMsgType.TEXT, b"hello")               # text is ignored
        client.transport.send(picows.WSMsgType.BINARY, b"")                  # no payload
        assert await client.ping_pong(b"\x07") == b"\x07"
        assert client.closed is None
    finally:
        await client.close()


async def test_each_session_of_a_device_gets_every_message(http):
    alice, bob = await register_user(http), await register_user(http)
    c1, c2 = await connect(http, bob), await connect(http, bob)
    try:
        await send_text(http, alice, bob, b"both")
        assert (await c1.next_envelope()).message == b"both"
        assert (await c2.next_envelope()).message == b"both"
    finally:
        await c1.close()
        await c2.close()


# -- batching ------------------------------------------------------------------------------------

async def test_sub_batching_and_oversized(node_factory):
    node, http = await node_factory(ws_message_fetch_batch_size=20, ws_max_batch_bytes=1024)
    alice, bob = await register_user(http), await register_user(http)
    payloads = [b"s%02d" % i for i in range(20)] + [b"L" * 4096]
    for p in payloads:
        await send_text(http, alice, bob, p)
    client = await connect(http, bob)
    try:
        envs = await client.envelopes_for(len(payloads))
        assert [e.message for e in envs] == payloads
        batches = [f for f in client.frames if f.WhichOneof("payload") == "envelope_batch"]
        assert len(batches) >= 3
        for frame in batches:
            sizes = [e.ByteSize() for e in frame.envelope_batch.envelopes]
            assert sum(sizes) <= 1024 or len(sizes) == 1
    finally:
        await client.close()


# -- liveness and control frames -------------------------------------------------------------------

async def test_server_pings_and_drops_a_silent_client(node_factory):
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=1)
    bob = await register_user(http)
    client = await connect(http, bob)
    client.auto_pong = False  # and send nothing: the server must give up on us
    await asyncio.wait_for(client.disconnected.wait(), 10)
    assert client.pings >= 1


async def test_pings_are_spread_over_the_interval(node_factory):
    # The heartbeat pings one group of sessions per 0.1 s step rather than every session in one
    # callback (a loop stall of ~10 us per session); each session still once per interval.
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=5)
    users = [await register_user(http) for _ in range(10)]
    clients = [await connect(http, user) for user in users]
    try:
        start = time.monotonic()
        await asyncio.sleep(3.2)
        for client in clients:
            gaps = [b - a for a, b in zip(client.ping_times, client.ping_times[1:])]
            assert len(gaps) >= 2 and all(0.7 < gap < 1.3 for gap in gaps), client.ping_times
        # one ping per session in the same one-second window: spread over it, not all at once
        window = [next(t for t in c.ping_times if t >= start + 1.0) for c in clients]
        assert max(window) - min(window) > 0.5, window
    finally:
        for client in clients:
            await client.close()


async def _retired_session(node, device_id):
    [session] = [s for s in node.gateway._sessions if s.device_id == device_id]
    for _ in range(50):  # the heartbeat runs every second
        if session._pump_retired and session._pump_task is None:
            break
        await asyncio.sleep(0.1)
    assert session._pump_task is None and session._pump_retired
    return session


async def _commit_elsewhere(node, sender, recipient, content: bytes, created_at=None):
    """A message row committed without this node's send path (as by another node): no wake-up,
    no direct hand-off. ``created_at`` (default now()) in the past is a transaction that started
    before rows the session already has but committed after them. Returns (message id, created_at)."""
    message_id = uuid7()
    async with node.database.acquire() as conn:
        created_at = await conn.fetchval(
            "INSERT INTO messages (id, sender_id, sender_device_id, device_id, submission_id, content, "
            "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), "
            "now() + interval '1 day') RETURNING created_at",
            message_id, sender.user_id, sender.device_id, recipient.device_id, uuid.uuid4(), content, created_at)
    return message_id, created_at


async def _idle_pair(node, http):
    """Alice, and Bob online with a retired pump: (alice, bob, bob's client, bob's session)."""
    alice, bob = await register_user(http), await register_user(http)
    client = await connect(http, bob)
    return alice, bob, client, await _retired_session(node, bob.device_id)


async def test_idle_pump_is_retired_and_restarted_by_a_wake_up(node_factory):
    # Idle sessions give up their pump task at a heartbeat (memory, performance.md goal 4); the
    # next wake-up starts a new one that continues from the same cursor: nothing lost or repeated.
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=5)
    alice, bob = await register_user(http), await register_user(http)
    await send_text(http, alice, bob, b"before")
    client = await connect(http, bob)
    try:
        [first] = await client.envelopes_for(1, timeout_s=5)
        session = await _retired_session(node, bob.device_id)
        await _commit_elsewhere(node, alice, bob, b"late")  # then a wake-up
        session.resync()
        [late] = await client.envelopes_for(1, timeout_s=5)
        assert late.message == b"late"
        assert session._pump_task is not None
        assert await client.no_envelope_within(0.3)  # "before" (not ACKed, re-read) is not sent again
        client.ack(first.id, late.id)
    finally:
        await client.close()


async def test_a_late_commit_behind_delivered_rows_is_delivered_once_with_its_content(node_factory):
    # The pump re-reads its lookback window (spec §13 item 13), naming the rows it has sent so the
    # database leaves them out: only the late one comes back, and nothing is sent twice.
    import datetime as dt
    node, http = await node_factory()
    alice, bob, client, session = await _idle_pair(node, http)
    try:
        for text in (b"one", b"two"):
            await send_text(http, alice, bob, text)
        got = await client.envelopes_for(2, timeout_s=5)
        assert [e.message for e in got] == [b"one", b"two"]
        newest = session._newest
        assert newest is not None
        fetched: list[list] = []
        original = node.messages.fetch_pending

        async def spy(device_id, after, limit, skip=()):
            page = await original(device_id, after, limit, skip)
            fetched.append(page)
            return page

        node.messages.fetch_pending = spy
        await _commit_elsewhere(node, alice, bob, b"late", created_at=newest - dt.timedelta(milliseconds=5))
        session.resync()  # its wake-up
        [late] = await client.envelopes_for(1, timeout_s=5)
        assert late.message == b"late" and late.sender_id == alice.user_id.bytes
        assert late.sender_device_id == alice.device_id.bytes
        assert await client.no_envelope_within(0.3)  # "one" and "two" (not ACKed) are not sent again
        assert [m.content for m in fetched[0]] == [b"late"]  # the sent rows were left out of the read
        client.ack(*(e.id for e in got), late.id)
    finally:
        await client.close()


async def test_direct_delivery_skips_what_the_pump_already_sent(node_factory):
    # The race the relay driver found: a commit, then the pump (woken for another message) reads
    # and sends the new row, then the sender's direct hand-off arrives with the same row.
    from obscura.services.messages import PendingMessage
    node, http = await node_factory()
    alice, bob, client, session = await _idle_pair(node, http)
    try:
        message_id, created_at = await _commit_elsewhere(node, alice, bob, b"raced")
        session.resync()  # the pump reads it
        [env] = await client.envelopes_for(1, timeout_s=5)
        assert env.message == b"raced"
        for _ in range(50):  # until the pump is idle again
            if session._wake_waiter is not None or session._pump_task is None:
                break
            await asyncio.sleep(0.02)
        late = PendingMessage(message_id, alice.user_id, alice.device_id, b"raced", created_at)
        assert session.deliver_direct([late])  # taken, and nothing is sent twice
        assert await client.no_envelope_within(0.3)
    finally:
        await client.close()


async def test_idle_session_gets_new_messages_directly_in_order(node_factory):
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=5)
    alice, bob, client, session = await _idle_pair(node, http)
    try:
        fetches = node.telemetry.value("obscura_message_fetch_batch_size")
        direct = node.telemetry.value("obscura_messages_delivered_directly_total") or 0
        latency_count, latency_sum = node.telemetry.value("obscura_message_delivery_latency_seconds") or (0, 0.0)
        started = time.perf_counter()
        await send(http, alice, *[submission(bob.device_id, b"d%d" % i) for i in range(3)])
        for i in range(3, 6):
            await send_text(http, alice, bob, b"d%d" % i)
        envelopes = await client.envelopes_for(6, timeout_s=5)
        elapsed = time.perf_counter() - started
        assert [e.message for e in envelopes] == [b"d%d" % i for i in range(6)]
        assert node.telemetry.value("obscura_messages_delivered_directly_total") == direct + 6
        # one latency observation per message written, each inside the time the four sends took
        count, total = node.telemetry.value("obscura_message_delivery_latency_seconds")
        assert count == latency_count + 6 and 0 < total - latency_sum < 6 * elapsed
        assert node.telemetry.value("obscura_message_fetch_batch_size") == fetches  # no inbox read
        assert session._pump_task is None  # no pump was needed
        client.ack(*[e.id for e in envelopes])
        async with node.database.acquire() as conn:
            for _ in range(50):
                if not await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", bob.device_id):
                    break
                await asyncio.sleep(0.1)
            assert await conn.fetchval("SELECT count(*) FROM messages WHERE device_id = $1", bob.device_id) == 0
        assert not session._sent  # ACKed and deleted: forgotten at once (no read was in flight)
    finally:
        await client.close()


async def test_a_group_commit_reaches_an_idle_session_in_one_frame(node_factory):
    # Send requests that reach the store in the same loop tick share one statement and one
    # commit (MessageRepo.enqueue); the session gets all the commit holds for it in one
    # EnvelopeBatch, in request order, before any of the requests resumes.
    from obscura._proto import obscura_pb2 as pb
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=5)
    alice, bob, client, session = await _idle_pair(node, http)
    carol = await register_user(http)
    try:
        frames = len(client.frames)
        bodies = [pb.SendMessageRequest(messages=[submission(bob.device_id, b"g%d" % i)]).SerializeToString()
                  for i in range(3)]
        senders = (alice, carol, alice)
        responses = await asyncio.gather(*(node.messages.send(u.user_id, u.device_id, uuid.uuid4(), body)
                                           for u, body in zip(senders, bodies)))
        assert responses == [b"", b"", b""]
        envelopes = await client.envelopes_for(3, timeout_s=5)
        assert [e.message for e in envelopes] == [b"g0", b"g1", b"g2"]
        assert [e.sender_id for e in envelopes] == [u.user_id.bytes for u in senders]
        assert len(client.frames) == frames + 1
        assert session._pump_task is None  # no wake-up, no inbox read
        client.ack(*[e.id for e in envelopes])
    finally:
        await client.close()


async def test_a_failing_direct_delivery_leaves_the_send_accepted_and_the_pump_delivers(node_factory):
    node, http = await node_factory(ws_ping_interval_secs=1, ws_ping_timeout_secs=5)
    alice, bob, client, session = await _idle_pair(node, http)

    def broken(by_device, received_at):  # an injected fault in the commit listener
        raise RuntimeError("injected")

    node.messages.local_delivery = broken
    try:
        await send_text(http, alice, bob, b"via the pump")  # 200 all the same
        [env] = await client.envelopes_for(1, timeout_s=5)
        assert env.message == b"via the pump"
        assert session._pump_task is not None  # the wake-up drained it
        client.ack(env.id)
    finally:
        await client.close()


async def test_pong_while_a_large_backlog_streams(node_factory):
    node, http = await node_factory(ws_message_fetch_batch_size=100)
    alice, bob = await register_user(http), await register_user(http)
    for _ in range(10):
        await send(http, alice, *[submission(bob.device_id, b"B" * 500_000) for _ in range(2)])
    client = await connect(http, bob)
    try:
        await client.next_envelope(10)
        assert await client.ping_pong(b"\x01\x02\x03", timeout_s=5) == b"\x01\x02\x03"
    finally:
        await client.close()


# -- prekey status -------------------------------------------------------------------------------

async def test_prekey_status_first_frame_when_low_then_realtime(http):
    bob = await register_user(http, otpk_count=21)
    alice = await register_user(http)
    client = await connect(http, bob)
    try:
        assert client.frames == []  # 21 >= 20: nothing at connect
        for _ in range(2):
            assert (await http.get(f"/v1/users/{bob.user_id}", headers=bearer(alice.token))).status_code == 200
        status = await asyncio.wait_for(client.prekey_status.get(), 3)
        assert (status.one_time_pre_key_count, status.min_threshold) == (19, 20)
    finally:
        await client.close()


async def test_prekey_exhausted_gets_status_on_connect_and_every_fetch(http):
    bob = await register_user(http, otpk_count=0)
    alice = await register_user(http)
    client = await connect(http, bob)
    try:
        status = await asyncio.wait_for(client.prekey_status.get(), 3)
        first = client.frames[0]
        assert first.WhichOneof("payload") == "pre_key_status"
        assert status.one_time_pre_key_count == 0
        await http.get(f"/v1/users/{bob.user_id}", headers=bearer(alice.token))
        status = await asyncio.wait_for(client.prekey_status.get(), 3)
        assert status.one_time_pre_key_count == 0
    finally:
        await client.close()


async def test_prekey_coalescing(http):
    bob = await register_user(http, otpk_count=25)
    alice = await register_user(http)
    client = await connect(http, bob)
    try:
        await asyncio.gather(*(http.get(f"/v1/users/{bob.user_id}", headers=bearer(alice.token)) for _ in range(20)))
        await asyncio.sleep(1.5)
        statuses = [f.pre_key_status for f in client.frames if f.WhichOneof("payload") == "pre_key_status"]
        assert 1 <= len(statuses) <= 9
        assert statuses[-1].one_time_pre_key_count == 5
    finally:
        await client.close()


async def test_concurrent_messages_and_prekeys_no_drops(http):
    alice = await register_user(http, otpk_count=21)
    bob = await register_user(http)
    client = await connect(http, alice)
    try:
        async def one(i):
            await send_text(http, bob, alice, b"c%d" % i)
            await http.get(f"/v1/users/{alice.user_id}", headers=bearer(bob.token))
        await asyncio.gather(*(one(i) for i in range(50)))
        envs = await client.envelopes_for(50, timeout_s=5)
        assert len({e.id for e in envs}) == 50
    finally:
        await client.close()


# -- disconnects -----------------------------------------------------------------------------------

async def test_takeover_closes_every_session_of_the_device(http):
    from tests.support.signal_keys import IdentityKey, key_bundle
    alice, bob = await register_user(http), await register_user(http)
    a1, a2, b1 = await connect(http, alice), await connect(http, alice), await connect(http, bob)
    res = await http.post("/v1/devices/keys", json=key_bundle(IdentityKey(), spk_id=5), headers=bearer(alice.token))
    assert res.status_code == 200
    await a1.wait_closed()
    await a2.wait_closed()
    assert a1.closed is not None and a1.closed.code is None  # a Close with no status code (§3.3)
    assert await b1.ping_pong() == b"\x01"
    await b1.close()


async def test_device_deletion_closes_its_sessions(http):
    alice = await register_user(http)
    client = await connect(http, alice)
    res = await http.delete(f"/v1/devices/{alice.device_id}", headers=bearer(alice.user_token))
    assert res.status_code == 200
    await client.wait_closed()


async def test_device_deleted_between_ticket_and_upgrade_gets_no_session(http):
    alice = await register_user(http)
    ticket = await get_ticket(http, alice)
    res = await http.delete(f"/v1/devices/{alice.device_id}", headers=bearer(alice.user_token))
    assert res.status_code == 200
    _, client = await picows.ws_connect(WsClient, f"ws://127.0.0.1:{http.base_url.port}/v1/gateway?ticket={ticket}")
    await client.wait_closed()
    assert client.closed is not None and client.closed.code is None


async def test_shutdown_sends_1001(settings_factory):
    cm = running_app(settings_factory())
    node = await cm.__aenter__()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            bob = await register_user(http)
            client = await connect(http, bob)
    finally:
        await cm.__aexit__(None, None, None)
    await client.wait_closed()
    assert client.closed is not None
    assert (client.closed.code, client.closed.reason) == (1001, b"Server shutting down")


async def test_connect_cancels_pending_push_job(http, app):
    bob = await register_user(http)
    await app.coordinator.schedule_push([bob.device_id], 30)
    assert await app.coordinator.push_due_at(bob.device_id) is not None
    client = await connect(http, bob)
    try:
        async def gone():
            return await app.coordinator.push_due_at(bob.device_id) is None
        await _eventually(gone)
    finally:
        await client.close()


@pytest.mark.parametrize("value", [b"not-a-uuid", b"\xff\xfe\xfd\x00"])
async def test_ticket_whose_stored_value_is_not_a_device_id_is_401(settings_factory, redis_url, value):
    """Upstream's invalid-device-id and invalid-UTF-8 cache cases: a corrupt ticket never upgrades."""
    import redis.asyncio as aioredis
    from tests.fixtures.redis import unique_redis_prefix
    prefix = unique_redis_prefix()
    settings = settings_factory(pubsub_url=redis_url, notifications_channel_prefix=prefix,
                                notifications_push_queue_key=prefix + "jobs")
    async with running_app(settings) as node:
        ticket = str(uuid.uuid4())
        raw = aioredis.from_url(redis_url)
        try:
            await raw.set(f"ws:ticket:{ticket}", value, ex=30)
        finally:
            await raw.aclose()
        with pytest.raises(picows.WSError):
            await picows.ws_connect(WsClient, f"ws://127.0.0.1:{node.port}/v1/gateway?ticket={ticket}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as http:
            res = await http.get(f"/v1/gateway?ticket={ticket}", headers={
                "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert res.status_code == 401  # and the ticket was consumed by the first attempt


# -- direct delivery across nodes (Redis) ---------------------------------------------------------

@pytest.fixture
async def redis_node(node_factory, redis_url):
    from tests.fixtures.redis import unique_redis_prefix
    prefix = unique_redis_prefix()
    return await node_factory(pubsub_url=redis_url, notifications_channel_prefix=prefix,
                              notifications_push_queue_key=prefix + "jobs",
                              ws_ping_interval_secs=60)  # heartbeats only when a test calls one


async def test_cluster_mode_direct_delivery_skips_its_own_echo(redis_node):
    node, http = redis_node
    alice, bob, client, session = await _idle_pair(node, http)
    try:
        fetches = node.telemetry.value("obscura_message_fetch_batch_size")
        await send_text(http, alice, bob, b"one")
        [env] = await client.envelopes_for(1, timeout_s=5)
        assert env.message == b"one"
        await asyncio.sleep(0.3)  # the wake-up went out through Redis and came back
        assert session._echoes == 0  # it came, and was recognised as ours
        assert node.telemetry.value("obscura_message_fetch_batch_size") == fetches  # no re-read
        assert await client.no_envelope_within(0.2)
    finally:
        await client.close()


async def test_a_skipped_remote_wake_up_is_drained_when_the_echo_never_comes(redis_node):
    # A wake-up taken for our own echo while the echo itself is lost: the heartbeat drains once.
    node, http = redis_node
    alice, bob, client, session = await _idle_pair(node, http)
    try:
        session._echoes, session._echo_until = 1, asyncio.get_running_loop().time() + 0.5
        await _commit_elsewhere(node, alice, bob, b"remote")
        await node.coordinator.publish(bob.device_id, 1)  # its wake-up: skipped as our echo
        for _ in range(50):
            if session._skipped:
                break
            await asyncio.sleep(0.05)
        assert session._skipped and session._echoes == 0
        assert await client.no_envelope_within(0.3)
        session.heartbeat(asyncio.get_running_loop().time())  # the next heartbeat drains once
        [env] = await client.envelopes_for(1, timeout_s=5)
        assert env.message == b"remote" and not session._skipped
    finally:
        await client.close()
