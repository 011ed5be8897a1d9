"""A client that misbehaves on the wire: frames it never reads, bytes that do
not parse. Each is answered with a status, and costs the server bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from atomchat.v1 import chat_pb2, resources_pb2

from atomchat_server.app import App
from atomchat_server.domain import errors
from tests.chat_support import Feed, chat, seqs
from tests.conftest import with_settings
from tests.raw_http2 import RawCall
from tests.support import People, Person, eventually, failure_of

BUFFER = 16


@pytest.fixture
async def small_buffer_app(database_url: str) -> AsyncIterator[App]:
    app = App(with_settings(stream_buffer=BUFFER), database_url)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def impatient_app(database_url: str) -> AsyncIterator[App]:
    """Resets a stalled stream half a second after it fell behind."""
    app = App(with_settings(stream_buffer=BUFFER, stalled_stream_seconds=0.5), database_url)
    await app.start()
    yield app
    await app.stop()


def raw_chat_stream(channel: grpc.aio.Channel, person: Person) -> Any:
    """ChatStream with requests written as bytes, so that they can be anything."""
    method = channel.stream_stream(
        "/atomchat.v1.ChatService/ChatStream",
        request_serializer=lambda frame: frame,
        response_deserializer=chat_pb2.ChatStreamResponse.FromString,
    )
    return method(metadata=person.api.metadata)


def join_frame(channel_id: int) -> bytes:
    join = chat_pb2.ChatJoin(channel_id=channel_id, history_limit=0)
    return chat_pb2.ChatStreamRequest(join=join).SerializeToString()


def send_frame(content: str, key: str) -> bytes:
    send = chat_pb2.ChatSend(content=content, client_message_id=key)
    return chat_pb2.ChatStreamRequest(send=send).SerializeToString()


async def read_until_end(call: Any, feed: Feed) -> grpc.aio.AioRpcError:
    async with asyncio.timeout(30):
        try:
            while (frame := await call.read()) is not grpc.aio.EOF:
                feed.add(frame)
        except grpc.aio.AioRpcError as error:
            return error
    raise AssertionError("the stream ended without an error status")


async def flood_without_reading(call: RawCall) -> None:
    """Re-send one client_message_id (whose ack carries the whole message) until the
    stream ends; take window updates, never grant the server any."""
    frame = send_frame("я" * 4000, "same")
    while not call.ended:
        if await call.send(frame):
            continue
        while not call.ended and not await call.send_queued():
            await call.receive()


async def joined(call: RawCall, channel_id: int) -> None:
    """Send the join frame on a raw call and wait for `joined`."""
    assert await call.send(join_frame(channel_id))
    async with asyncio.timeout(10):
        while not call.messages():
            await call.receive()
    assert chat_pb2.ChatStreamResponse.FromString(call.messages()[0]).HasField("joined")


async def test_acks_a_client_does_not_read_count_toward_its_buffer(
    people: People, small_buffer_app: App
) -> None:
    """Re-sending one client_message_id queues an ack carrying the whole message each
    time; a client that reads none of them is ended RESOURCE_EXHAUSTED at the buffer."""
    owner = await people.user()
    channel = await people.channel(owner)
    call = await RawCall.open(
        small_buffer_app.port,
        "/atomchat.v1.ChatService/ChatStream",
        owner.api.metadata,
        window=1024,
    )

    async def fell_behind() -> bool:
        return any(
            isinstance(s.ends_with, errors.ResourceExhausted)
            for s in small_buffer_app.hub.subscribers(channel.id)
        )

    try:
        await joined(call, channel.id)
        flooding = asyncio.create_task(flood_without_reading(call))
        await eventually(fell_behind)
        flooding.cancel()
        await asyncio.wait({flooding})
        async with asyncio.timeout(30):
            await call.until_ended(grant=True)
    finally:
        await call.close()
    assert call.trailers.get("grpc-status") == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
    frames = [chat_pb2.ChatStreamResponse.FromString(m) for m in call.messages()]
    # joined, the message itself, then at most what the buffer held.
    assert [f.WhichOneof("frame") for f in frames[:2]] == ["joined", "message"]
    assert len(frames) <= 2 + BUFFER
    assert all(f.ack.message.seq == 1 for f in frames[2:])


async def test_a_stream_that_grants_no_window_is_dropped_after_the_grace_period(
    people: People, impatient_app: App
) -> None:
    """A raw HTTP/2 client that never lets a byte more through keeps re-sending one
    client_message_id: the server's write can never complete, its queue stops at the
    buffer, and after the grace period the stream's handler is cancelled and freed."""
    owner = await people.user()
    channel = await people.channel(owner)
    call = await RawCall.open(
        impatient_app.port, "/atomchat.v1.ChatService/ChatStream", owner.api.metadata, window=1024
    )

    async def dropped() -> bool:
        return not impatient_app.hub.subscribers(channel.id)

    try:
        await joined(call, channel.id)
        assert impatient_app.hub.subscribers(channel.id)
        flooding = asyncio.create_task(flood_without_reading(call))
        await eventually(dropped, timeout=30)
        flooding.cancel()
        await asyncio.wait({flooding})
        assert len(call.data) <= 1024
    finally:
        await call.close()


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (send_frame("hello", "k").replace(b"hello", b"h\xffllo"), "bad UTF-8"),
        (b"\x12\x05\x0a\x03ab", "truncated"),
        (b"\xff\xff\xff", "garbage"),
    ],
    ids=["invalid-utf8", "truncated", "garbage"],
)
async def test_a_malformed_frame_ends_the_stream_invalid_argument(
    people: People, grpc_channel: grpc.aio.Channel, frame: bytes, problem: str
) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    call = raw_chat_stream(grpc_channel, owner)
    await call.write(join_frame(channel.id))
    assert (await call.read()).HasField("joined")
    await call.write(frame)
    ended = await read_until_end(call, Feed())
    assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT, problem
    assert failure_of(ended).reason == errors.Reason.MALFORMED_REQUEST
    async with chat(owner, channel.id, history_limit=10) as reader:
        await reader.send("the channel is fine", "ok")
        await reader.ack("ok")
        assert seqs(reader.feed.messages()) == [1]


async def test_a_malformed_first_frame_is_invalid_argument(
    people: People, grpc_channel: grpc.aio.Channel
) -> None:
    owner = await people.user()
    call = raw_chat_stream(grpc_channel, owner)
    await call.write(b"\x0a\xff")
    ended = await read_until_end(call, Feed())
    assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "body",
    [b"\x08\xff\xff", b"\x12\x03h\xffi", b"\x12\x10short", b"\x12\x02\xed\xa0"],
    ids=["truncated-varint", "invalid-utf8", "truncated-string", "lone-surrogate"],
)
async def test_a_malformed_unary_request_is_invalid_argument(
    people: People, grpc_channel: grpc.aio.Channel, body: bytes
) -> None:
    owner = await people.user()
    send = grpc_channel.unary_unary(
        "/atomchat.v1.ChatService/SendMessage",
        request_serializer=lambda frame: frame,
        response_deserializer=resources_pb2.Message.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await send(body, metadata=owner.api.metadata)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure_of(raised.value).reason == errors.Reason.MALFORMED_REQUEST
