"""Delivery beyond one happy process: slow readers, several server processes,
a listener that loses its connection, and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from atomchat.v1 import chat_pb2

from atomchat_server.app import App
from devsupport import Server, serve_atomchat
from tests.chat_support import chat, post, seqs, subscription
from tests.conftest import TEST_SETTINGS, Dial, with_settings
from tests.support import People, sql


async def read_to_the_end(call: grpc.aio.UnaryStreamCall[Any, Any]) -> grpc.aio.AioRpcError:
    """Read what the stream still holds; return the error status that ends it."""
    async with asyncio.timeout(30):
        try:
            while True:
                await call.read()
        except grpc.aio.AioRpcError as error:
            return error


@pytest.fixture
async def small_buffer_app(database_url: str) -> AsyncIterator[App]:
    app = App(with_settings(stream_buffer=16), database_url)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[Server]:
    async with serve_atomchat(
        database_url=database_url, ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret
    ) as child:
        yield child


# A client that grants the server no more than a small flow-control window.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16_384)]


async def test_a_reader_that_stops_reading_is_cut_off_and_nobody_waits_for_it(
    people: People, small_buffer_app: App, dial: Dial
) -> None:
    owner = await people.user()
    slow_reader = await people.user()
    channel = await people.channel(owner, members=(slow_reader,))
    # Different connections, as different users would have.
    fast = await dial(small_buffer_app.port, owner)
    slow = await dial(small_buffer_app.port, slow_reader, SMALL_WINDOW)

    call = slow.api.chat.Subscribe(
        chat_pb2.SubscribeRequest(channel_id=channel.id, history_limit=0)
    )
    assert (await call.read()).WhichOneof("event") == "joined"
    async with subscription(fast, channel.id, history_limit=0) as fast_feed:
        await fast_feed.until(lambda f: bool(f.of("joined")))
        big = "я" * 3990
        for n in range(150):
            await post(owner, channel.id, f"{n:03} {big}")
        received = await fast_feed.until_messages(150, timeout=30)
    assert seqs(received) == list(range(1, 151))

    ended = await read_to_the_end(call)
    assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ended.details() == "Too far behind: resume with after_seq"


async def test_messages_reach_streams_on_every_server_process(
    people: People, other_process: Server, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    remote = await dial(other_process.grpc_port, member)
    async with (
        chat(owner, channel.id, history_limit=0) as here,
        chat(remote, channel.id, history_limit=0) as there,
    ):
        await there.send("sent through the other process", "a")
        await there.ack("a")
        await here.send("sent through this process", "b")
        await here.ack("b")
        for stream in (here, there):
            messages = await stream.feed.until_messages(2)
            assert [m.content for m in messages] == [
                "sent through the other process",
                "sent through this process",
            ]


async def test_the_listener_reconnects_and_streams_recover_what_they_missed(
    people: People, app: App, other_process: Server, dial: Dial, database_url: str
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    remote = await dial(other_process.grpc_port, member)
    async with chat(owner, channel.id, history_limit=0) as here:
        await post(remote, channel.id, "before the drop")
        await here.feed.until_messages(1)
        reconnects = app.bus.reconnects
        await sql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'atomchat-listener' AND datname = current_database()",
        )
        for n in range(5):
            await post(remote, channel.id, f"during the drop {n}")

        await app.bus.wait_for_reconnects(reconnects + 1)
        await post(remote, channel.id, "after the drop")
        messages = await here.feed.until_messages(7)
    assert seqs(messages) == list(range(1, 8))


async def test_sigterm_ends_streams_unavailable_and_keeps_every_acked_message(
    people: People, dial: Dial, database_url: str
) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    async with serve_atomchat(
        database_url=database_url, ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret
    ) as child:
        remote = await dial(child.grpc_port, owner)
        async with chat(remote, channel.id, history_limit=0) as stream:
            for n in range(20):
                await stream.send(f"message {n}", f"k{n}")
            acked = [await stream.ack(f"k{n}") for n in range(20)]
            child.process.send_signal(signal.SIGTERM)
            ended = await stream.feed.until_ended()
            assert ended.code() == grpc.StatusCode.UNAVAILABLE
            assert await child.process.wait() == 0
    stored = await sql(
        database_url, "SELECT seq FROM messages WHERE channel_id = $1 ORDER BY seq", channel.id
    )
    assert [row["seq"] for row in stored] == [a.message.seq for a in acked]


async def test_quiet_streams_get_heartbeats(people: People, dial: Dial, database_url: str) -> None:
    app = App(with_settings(heartbeat_seconds=0.2), database_url)
    await app.start()
    try:
        owner = await people.user()
        channel = await people.channel(owner)
        local = await dial(app.port, owner)
        async with subscription(local, channel.id, history_limit=0) as feed:
            await feed.until(lambda f: len(f.of("heartbeat")) >= 2, timeout=5)
            assert all(beat.server_time.seconds > 0 for beat in feed.of("heartbeat"))
            assert not feed.messages()
    finally:
        await app.stop()
