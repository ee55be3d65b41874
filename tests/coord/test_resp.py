"""The lean RESP client (obscura.coord.resp): the parser on its own, then against real Redis
servers (password, database, unix socket, TLS through a terminating proxy) and the coordinator's
hot connection under link faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url

from obscura.coord import CoordinationError, Event
from obscura.coord.redis import RedisCoordinator
from obscura.coord.resp import (
    MAX_LINE_BYTES,
    Incomplete,
    RespError,
    RespProtocol,
    RespProtocolError,
    encode_command,
    encode_publish,
    open_connection,
    parse_reply,
)
from tests.adversity.faultproxy import FaultProxy
from tests.coord.support import Collector, coord_settings, drop_keys
from tests.fixtures.redis import RedisServer
from tests.support.tls import self_signed_certificate

# -- the parser ----------------------------------------------------------------------------------

STREAM = (b"+OK\r\n-ERR wrong kind\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$-1\r\n$0\r\n\r\n"
          b"$4\r\na\r\nb\r\n*-1\r\n*0\r\n*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$3\r\nchn\r\n$1\r\n\x01\r\n"
          b"*2\r\n*1\r\n:1\r\n$3\r\nxyz\r\n")


def _expected() -> list[object]:
    return [b"OK", ("error", "ERR wrong kind"), 42, -7, b"hello", None, b"", b"a\r\nb", None, [],
            [b"pmessage", b"p*", b"chn", b"\x01"], [[1], b"xyz"]]


def _plain(value: object) -> object:
    return ("error", str(value)) if isinstance(value, RespError) else value


@pytest.mark.parametrize("channel, payload", [
    ("user:" + str(uuid.UUID(int=0x0123456789abcdef0123456789abcdef)), b"\x01"), ("", b""), ("pr\u00e9fixe:x", b"\r\n\x00" * 40)])
def test_encode_publish_writes_what_encode_command_writes(channel: str, payload: bytes) -> None:
    assert encode_publish(channel, payload) == encode_command((b"PUBLISH", channel, payload))
    assert parse_reply(encode_publish(channel, payload), 0) == ([b"PUBLISH", channel.encode(), payload],
                                                                len(encode_publish(channel, payload)))


def test_replies_parse_the_same_at_every_split_point() -> None:
    loop = asyncio.new_event_loop()
    try:
        for cut in range(1, len(STREAM)):
            got: list[object] = []
            proto = RespProtocol(loop, on_push=lambda v: got.append(_plain(v)))
            proto.data_received(STREAM[:cut])
            proto.data_received(STREAM[cut:])
            assert got == _expected(), cut
        got = []
        proto = RespProtocol(loop, on_push=lambda v: got.append(_plain(v)))
        for i in range(len(STREAM)):  # one byte at a time
            proto.data_received(STREAM[i:i + 1])
        assert got == _expected()
    finally:
        loop.close()


@pytest.mark.parametrize("bad", [
    b"?what\r\n", b"$-2\r\n", b"$3\r\nabcde\r\n", b":12a\r\n", b":\r\n", b"*-5\r\n",
    b"*1\r\n" * 9 + b":1\r\n", b"*2000000\r\n", b"$600000000\r\n", b":" + b"9" * 30 + b"\r\n",
])
def test_malformed_replies_are_protocol_errors(bad: bytes) -> None:
    with pytest.raises(RespProtocolError):
        parse_reply(bad + b"\r\n" * 8, 0)


def test_a_line_without_end_is_bounded() -> None:
    with pytest.raises(Incomplete):
        parse_reply(b"+" + b"x" * 100, 0)
    with pytest.raises(RespProtocolError):
        parse_reply(b"+" + b"x" * (MAX_LINE_BYTES + 1), 0)


def test_waiting_for_more_bytes_keeps_no_history() -> None:
    # Re-raising one shared exception instance would chain every raise's frames onto its
    # traceback: the fuzzer found the parser growing by ~300 KB per partial reply that way.
    seen = []
    for _ in range(3):
        try:
            parse_reply(b"*2\r\n$5\r\nhel", 0)
        except Incomplete as exc:
            seen.append(exc)
    assert len({id(e) for e in seen}) == 3
    depth, tb = 0, seen[-1].__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    assert depth <= 3  # this frame and the parser's own (nested) frames, nothing from earlier raises


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode_command((b"SET", "k\u00e9", 5, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n5\r\n$3\r\n1.5\r\n")
    for bad in (True, None, [1]):
        with pytest.raises(TypeError):
            encode_command((b"SET", bad))


# -- against real Redis --------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _link_and_key(redis_url: str) -> AsyncIterator[tuple[RespProtocol, str]]:
    """A lean-client connection and a fresh key, deleted afterwards."""
    key = f"test:resp:{uuid.uuid4().hex}"
    proto = await open_connection(redis_url, 5.0)
    try:
        yield proto, key
    finally:
        await proto.call(b"DEL", key)
        proto.abort()


async def test_a_thousand_pipelined_commands_reply_in_order(redis_url: str) -> None:
    async with _link_and_key(redis_url) as (proto, key):
        cmds = [encode_command((b"INCR", key)) for _ in range(1000)]
        cmds.insert(500, encode_command((b"HGET", key, b"f")))  # WRONGTYPE: only this one fails
        futures = proto.send(b"".join(cmds), len(cmds))
        await asyncio.gather(*futures, return_exceptions=True)
        errors = [i for i, f in enumerate(futures) if f.exception() is not None]
        assert errors == [500] and "WRONGTYPE" in str(futures[500].exception())
        values = [f.result() for i, f in enumerate(futures) if i != 500]
        assert values == list(range(1, 1001))
        assert await proto.call(b"GET", key) == b"1000"  # the connection is still fine


async def test_a_batch_gets_its_replies_as_one_list_with_error_replies_as_values(redis_url: str) -> None:
    async with _link_and_key(redis_url) as (proto, key):
        cmds = [encode_command((b"INCR", key)) for _ in range(300)]
        cmds.insert(100, encode_command((b"HGET", key, b"f")))  # WRONGTYPE: a value in the list
        first = proto.send_batch(b"".join(cmds), len(cmds))
        second = proto.send_batch(encode_command((b"GET", key)), 1)
        replies = await first
        assert len(replies) == 301 and isinstance(replies[100], RespError)
        assert "WRONGTYPE" in str(replies[100])
        assert [r for i, r in enumerate(replies) if i != 100] == list(range(1, 301))
        assert await second == [b"300"]


async def test_a_cancelled_batch_drops_its_replies_and_the_next_gets_its_own(redis_url: str) -> None:
    async with _link_and_key(redis_url) as (proto, key):
        gave_up = proto.send_batch(b"".join(encode_command((b"INCR", key)) for _ in range(3)), 3)
        gave_up.cancel()  # before any reply can have been read: the caller gave up (a timeout)
        after = proto.send_batch(encode_command((b"INCRBY", key, 10)), 1)
        assert await after == [13]  # not one of the three dropped replies
        assert await proto.call(b"GET", key) == b"13"


async def test_a_batch_on_a_dropped_link_fails_with_connection_error(redis_url: str) -> None:
    proto = await open_connection(redis_url, 5.0)
    pending = proto.send_batch(encode_command((b"BLPOP", f"test:resp:{uuid.uuid4().hex}", 5)), 1)
    await asyncio.sleep(0.05)
    proto.abort()
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        proto.send_batch(encode_command((b"PING",)), 1)


async def test_password_database_and_unix_socket_come_from_the_url(
        redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(password="s3cret", unix_socket=True)
    raw = aioredis.Redis.from_url(f"redis://:s3cret@127.0.0.1:{server.port}/3", socket_timeout=5)
    try:
        for url in (f"redis://:s3cret@127.0.0.1:{server.port}/3", f"unix://:s3cret@{server.unix_path}?db=3"):
            proto = await open_connection(url, 5.0)
            await proto.call(b"SET", b"where", url.encode())
            proto.abort()
            assert await raw.get(b"where") == url.encode()  # in database 3, read by redis-py
        with pytest.raises(RespError):
            await open_connection(f"redis://:wrong@127.0.0.1:{server.port}/0", 5.0)
        with pytest.raises(RespError):  # no password at all: NOAUTH on the first command
            await (await open_connection(f"redis://127.0.0.1:{server.port}/0", 5.0)).call(b"GET", b"x")
    finally:
        await raw.aclose()


def _tls_files(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: the server context and the CA file."""
    cert, key = self_signed_certificate(tmp_path, "redis")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


async def test_the_coordinator_works_over_tls(redis_url: str, tmp_path: Path) -> None:
    opts = parse_url(redis_url)
    server_ctx, ca = _tls_files(tmp_path)
    proxy = await FaultProxy(opts.get("host", "127.0.0.1"), int(opts.get("port", 6379)), unix_path=opts.get("path"),
                             tls=server_ctx).start()
    db = opts.get("db") or 0
    coord = RedisCoordinator(coord_settings(), f"rediss://localhost:{proxy.port}/{db}?ssl_ca_certs={ca}")
    try:
        await coord.start()  # the subscriber connected through TLS
        device, got = uuid.uuid4(), Collector()
        coord.subscribe(device, got)
        await coord.publish(device, Event.MESSAGE_RECEIVED)
        assert await got.wait_for(1) == [1]
        key = f"test:resp:{uuid.uuid4().hex}"
        await coord.put_idempotent(key, b"\x00answer", 60)
        assert await coord.get_idempotent(key) == b"\x00answer"
        await coord.put_ticket(key + "t", device, 60)  # the redis-py side reads the same URL
        assert await coord.take_ticket(key + "t") is not None
        await drop_keys(redis_url, key)
    finally:
        await coord.close()
    untrusted = RedisCoordinator(coord_settings(), f"rediss://localhost:{proxy.port}/{db}",
                                 command_timeout_s=0.5, start_timeout_s=1.0)
    try:
        with pytest.raises(CoordinationError):  # a self-signed certificate is not trusted by default
            await untrusted.start()
    finally:
        await proxy.close()


# -- the coordinator's hot connection under faults ------------------------------------------------

@contextlib.asynccontextmanager
async def _behind_a_proxy(server: RedisServer, command_timeout_s: float
                          ) -> AsyncIterator[tuple[FaultProxy, RedisCoordinator]]:
    """A started coordinator talking to ``server`` through a fault proxy."""
    proxy = await FaultProxy("127.0.0.1", server.port).start()
    coord = RedisCoordinator(coord_settings(), f"redis://127.0.0.1:{proxy.port}/0",
                             command_timeout_s=command_timeout_s)
    try:
        await coord.start()
        yield proxy, coord
    finally:
        await coord.close()
        await proxy.close()


async def test_a_pipeline_whose_link_dropped_is_sent_again_on_a_new_one(
        redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory()
    raw = aioredis.Redis.from_url(server.url, socket_timeout=5)
    try:
        async with _behind_a_proxy(server, 2.0) as (proxy, coord):
            await coord.put_idempotent("k0", b"v0", 60)
            first = coord._pipe._hot
            proxy.stall()
            pending = asyncio.ensure_future(coord.put_idempotent("k1", b"v1", 60))
            await asyncio.sleep(0.1)  # written, held by the stalled proxy, no reply yet
            assert not pending.done()
            proxy.drop()
            proxy.heal()
            await asyncio.wait_for(pending, 5)  # sent again on a new connection: no error for the caller
            assert coord._pipe._hot is not first
            assert await raw.get("k1") == b"v1"
    finally:
        await raw.aclose()


async def test_a_stalled_link_fails_after_the_command_timeout_then_recovers(
        redis_server_factory: Callable[..., RedisServer]) -> None:
    async with _behind_a_proxy(redis_server_factory(), 0.5) as (proxy, coord):
        await coord.put_idempotent("k", b"v", 60)
        proxy.stall()
        started = asyncio.get_running_loop().time()
        with pytest.raises(CoordinationError, match="TimeoutError"):
            await coord.get_idempotent("k")
        assert asyncio.get_running_loop().time() - started < 2.0
        proxy.heal()
        assert await coord.get_idempotent("k") == b"v"  # the timed-out connection was replaced


async def test_an_error_reply_to_the_subscription_is_not_a_subscription(
        redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture) -> None:
    server = redis_server_factory()
    raw = aioredis.Redis.from_url(server.url, socket_timeout=5)
    await raw.execute_command("ACL", "SETUSER", "nosub", "on", ">pw", "~*", "+@all", "resetchannels")
    await raw.aclose()
    coord = RedisCoordinator(coord_settings(), f"redis://nosub:pw@127.0.0.1:{server.port}/0",
                             command_timeout_s=0.5, start_timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="obscura.coord.redis"), pytest.raises(CoordinationError):
        await coord.start()  # NOPERM on PSUBSCRIBE: never "subscribed", start gives up in time
    assert not coord.subscribed
    assert "error reply" in caplog.text
