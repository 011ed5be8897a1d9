"""Live chat clients for tests: frames are collected as they arrive, and tests
wait for what they expect with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from atomchat.v1 import chat_pb2, inbox_pb2, resources_pb2

from tests.support import Person

WAIT = 10.0


@dataclass
class Feed:
    """Frames received on one stream, and how the stream ended."""

    frames: list[Any] = field(default_factory=list)
    ended: grpc.aio.AioRpcError | None = None
    finished: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, frame: Any) -> None:
        self.frames.append(frame)
        self._changed.set()

    def end(self, error: grpc.aio.AioRpcError | None) -> None:
        self.ended = error
        self.finished = True
        self._changed.set()

    def messages(self) -> list[resources_pb2.Message]:
        found: list[resources_pb2.Message] = []
        for frame in self.frames:
            kind = frame.WhichOneof("frame" if hasattr(frame, "ack") else "event")
            if kind == "message":
                found.append(frame.message)
            elif kind == "messages":
                found.extend(frame.messages.messages)
        return found

    def of(self, kind: str) -> list[Any]:
        name = "frame" if self.frames and hasattr(self.frames[0], "ack") else "event"
        return [getattr(f, kind) for f in self.frames if f.WhichOneof(name) == kind]

    async def until(self, check: Callable[[Feed], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not check(self):
                if self.finished:
                    raise AssertionError(f"stream ended ({self.ended}) before the condition held")
                self._changed.clear()
                await self._changed.wait()

    async def until_messages(
        self, count: int, timeout: float = WAIT
    ) -> list[resources_pb2.Message]:
        await self.until(lambda feed: len(feed.messages()) >= count, timeout)
        return self.messages()

    async def until_ended(self, timeout: float = WAIT) -> grpc.aio.AioRpcError:
        async with asyncio.timeout(timeout):
            while not self.finished:
                self._changed.clear()
                await self._changed.wait()
        assert self.ended is not None, "the stream ended without an error status"
        return self.ended


async def _collect(call: Any, feed: Feed) -> None:
    try:
        async for frame in call:
            feed.add(frame)
    except grpc.aio.AioRpcError as error:
        feed.end(error)
    except asyncio.CancelledError:
        feed.end(None)
        raise
    else:
        feed.end(None)


@dataclass
class Chat:
    """An open ChatStream."""

    call: Any
    feed: Feed
    task: asyncio.Task[None]

    async def send(self, content: str, client_message_id: str = "") -> None:
        await self.call.write(
            chat_pb2.ChatStreamRequest(
                send=chat_pb2.ChatSend(content=content, client_message_id=client_message_id)
            )
        )

    async def ack(self, client_message_id: str) -> chat_pb2.ChatAck:
        def acked(feed: Feed) -> bool:
            return any(a.client_message_id == client_message_id for a in feed.of("ack"))

        await self.feed.until(acked)
        acks: list[chat_pb2.ChatAck] = self.feed.of("ack")
        return next(a for a in acks if a.client_message_id == client_message_id)

    async def error(self, client_message_id: str) -> chat_pb2.ChatError:
        def failed(feed: Feed) -> bool:
            return any(e.client_message_id == client_message_id for e in feed.of("error"))

        await self.feed.until(failed)
        errors: list[chat_pb2.ChatError] = self.feed.of("error")
        return next(e for e in errors if e.client_message_id == client_message_id)


@contextlib.asynccontextmanager
async def chat(
    person: Person, channel_id: int, *, wait_joined: bool = True, **join: Any
) -> AsyncIterator[Chat]:
    """A ChatStream joined to `channel_id`; cancelled when the block ends."""
    call = person.api.chat.ChatStream()
    await call.write(
        chat_pb2.ChatStreamRequest(join=chat_pb2.ChatJoin(channel_id=channel_id, **join))
    )
    feed = Feed()
    task = asyncio.create_task(_collect(call, feed))
    try:
        if wait_joined:
            await feed.until(lambda f: bool(f.of("joined")))
        yield Chat(call, feed, task)
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def subscription(
    person: Person, channel_id: int, *, wait_joined: bool = True, **options: Any
) -> AsyncIterator[Feed]:
    """A Subscribe stream, joined (or ended) unless wait_joined=False: whatever is
    committed from then on reaches it. Cancelled when the block ends."""
    call = person.api.chat.Subscribe(chat_pb2.SubscribeRequest(channel_id=channel_id, **options))
    feed = Feed()
    task = asyncio.create_task(_collect(call, feed))
    try:
        if wait_joined:
            await feed.until(lambda f: f.finished or bool(f.of("joined")))
        yield feed
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def seqs(messages: list[resources_pb2.Message]) -> list[int]:
    return [m.seq for m in messages]


async def post(
    person: Person, channel_id: int, content: str, key: str = ""
) -> resources_pb2.Message:
    message: resources_pb2.Message = await person.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(channel_id=channel_id, content=content, client_message_id=key)
    )
    return message


@contextlib.asynccontextmanager
async def inbox(person: Person, *, wait_open: bool = True, **options: Any) -> AsyncIterator[Feed]:
    """A StreamInbox stream, open (its headers received) unless wait_open=False;
    cancelled when the block ends."""
    call = person.api.inbox.StreamInbox(inbox_pb2.StreamInboxRequest(**options))
    feed = Feed()
    task = asyncio.create_task(_collect(call, feed))
    try:
        if wait_open:
            async with asyncio.timeout(WAIT):
                await call.initial_metadata()
        yield feed
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
