"""The ceiling: a bare grpc.aio fan-out of the same shape as AtomChat's chat.

No database, no authentication, no group commit (but the same gRPC server
options, so that both take a burst of calls alike): ChatStream's `join` adds
the stream to an in-process broadcast for its channel, each `send` is
numbered, serialised once as a `message` frame, appended to every stream's
queue of that channel and acknowledged. Each stream's handler task drains
its own queue with one `context.write` per copy. It speaks ChatStream's
frames, so the same load generator drives it.

Run: `python -m bench.bare_server [--port-file PATH]` prints `gRPC
host:port` (and, given a port file, writes its port there as `atomchat serve
--port-file` does), then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import uvloop
from atomchat.v1 import chat_pb2, resources_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from atomchat_server.app import SERVER_OPTIONS
from atomchat_server.cli import write_port_file

SERVICE = "atomchat.v1.ChatService"
Context = grpc.aio.ServicerContext[Any, bytes]


class Queue:
    """One stream's frames waiting to be written."""

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def push(self, frame: bytes) -> None:
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def pop(self) -> bytes:
        while not self._frames:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._frames.popleft()


class Broadcast:
    """Streams by channel, and each channel's next seq."""

    def __init__(self) -> None:
        self._streams: dict[int, set[Queue]] = {}
        self._seqs: dict[int, int] = {}

    def join(self, channel_id: int, queue: Queue) -> None:
        self._streams.setdefault(channel_id, set()).add(queue)

    def leave(self, channel_id: int, queue: Queue) -> None:
        self._streams.get(channel_id, set()).discard(queue)

    def post(self, channel_id: int, send: chat_pb2.ChatSend) -> resources_pb2.Message:
        seq = self._seqs.get(channel_id, 0) + 1
        self._seqs[channel_id] = seq
        created = Timestamp()
        created.FromDatetime(datetime.now(UTC))
        message = resources_pb2.Message(
            id=seq,
            channel_id=channel_id,
            seq=seq,
            sender_id=1,
            sender_username="bench_sender",
            content=send.content,
            created_at=created,
            client_message_id=send.client_message_id,
        )
        frame = chat_pb2.ChatStreamResponse(message=message).SerializeToString()
        for queue in self._streams.get(channel_id, ()):
            queue.push(frame)
        return message


class BareChat:
    def __init__(self) -> None:
        self._broadcast = Broadcast()

    async def chat_stream(
        self, requests: AsyncIterator[chat_pb2.ChatStreamRequest], context: Context
    ) -> None:
        first = await anext(requests)
        channel_id = first.join.channel_id
        joined = chat_pb2.ChatJoined(channel=resources_pb2.Channel(id=channel_id))
        await context.write(chat_pb2.ChatStreamResponse(joined=joined).SerializeToString())
        queue = Queue()
        self._broadcast.join(channel_id, queue)
        reader = asyncio.create_task(self._read_sends(requests, channel_id, queue))
        try:
            while True:
                await context.write(await queue.pop())
        finally:
            self._broadcast.leave(channel_id, queue)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_sends(
        self, requests: AsyncIterator[chat_pb2.ChatStreamRequest], channel_id: int, queue: Queue
    ) -> None:
        async for request in requests:
            send = request.send
            message = self._broadcast.post(channel_id, send)
            ack = chat_pb2.ChatAck(client_message_id=send.client_message_id, message=message)
            queue.push(chat_pb2.ChatStreamResponse(ack=ack).SerializeToString())

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ChatStream": grpc.stream_stream_rpc_method_handler(
                    self.chat_stream,
                    request_deserializer=chat_pb2.ChatStreamRequest.FromString,
                    response_serializer=bytes,
                )
            },
        )


async def serve(host: str, port: int, port_file: Path | None) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((BareChat().handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"gRPC      {host}:{bound}", flush=True)
    print("bare server ready", flush=True)
    if port_file is not None:
        await asyncio.to_thread(write_port_file, port_file, {"grpc": bound, "pid": os.getpid()})
    try:
        await stop.wait()
    finally:
        if port_file is not None:
            await asyncio.to_thread(port_file.unlink, missing_ok=True)
        await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description="bare grpc.aio fan-out (the ceiling)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the port there once ready")
    options = parser.parse_args()
    uvloop.run(serve(options.host, options.port, options.port_file))


if __name__ == "__main__":
    main()
