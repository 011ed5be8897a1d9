"""One chat stream of the load generator: join, then receive and check every frame.

Each stream checks that it gets every seq of its channel exactly once, in
order, messages and updates (edits, reactions) alike, and nothing of any
other channel; it records the latency of every copy of a message or an edit
made inside the measurement window, and for one such copy in ROW_SAMPLE (the
first, the ninth, ...) the time from its row time (created_at) to its receipt.
The loop is kept lean: the generator shares the machine with the server it
measures.
"""

from __future__ import annotations

import time
from typing import Protocol, cast

import grpc
from atomchat.v1 import chat_pb2, resources_pb2

from bench import payload
from bench.tracking import ROW_SAMPLE, ChannelTracker, Window

CHAT_STREAM = "/atomchat.v1.ChatService/ChatStream"
JOIN_CONCURRENCY = 32
CONNECTION_OPTIONS = [
    # A connection of its own per channel, instead of one shared subchannel.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def connect(target: str) -> grpc.aio.Channel:
    """A new HTTP/2 connection to `target`, shared by several streams."""
    return grpc.aio.insecure_channel(target, options=CONNECTION_OPTIONS)


class AckHandler(Protocol):
    def acknowledged(self, ack: chat_pb2.ChatAck, now: int) -> None: ...

    def refused(self, error: chat_pb2.ChatError) -> None: ...


Call = grpc.aio.StreamStreamCall[chat_pb2.ChatStreamRequest, chat_pb2.ChatStreamResponse]


def open_call(connection: grpc.aio.Channel, token: str) -> Call:
    method = connection.stream_stream(
        CHAT_STREAM,
        request_serializer=chat_pb2.ChatStreamRequest.SerializeToString,
        response_deserializer=chat_pb2.ChatStreamResponse.FromString,
    )
    return cast(Call, method(metadata=(("authorization", f"Bearer {token}"),)))


class Stream:
    def __init__(self, call: Call, tracker: ChannelTracker, window: Window) -> None:
        self.call = call
        self.tracker = tracker
        self.window = window
        self.acks: AckHandler | None = None
        self.next_seq = 1
        self.duplicates = 0
        self.leaks = 0
        self.out_of_order = 0
        self.missing: set[int] = set()
        self.error = ""
        self.closing = False

    async def join(self, max_batch: int) -> None:
        """Open the channel from its first message; return once `joined` arrives."""
        join = chat_pb2.ChatJoin(
            channel_id=self.tracker.channel_id, after_seq=0, max_batch=max_batch
        )
        await self.call.write(chat_pb2.ChatStreamRequest(join=join))
        first = await self.call.read()
        if not isinstance(first, chat_pb2.ChatStreamResponse) or not first.HasField("joined"):
            raise RuntimeError(f"expected `joined`, got {first!r}")

    def loss(self) -> int:
        """Messages this stream never received, of those its channel committed."""
        return len(self.missing) + max(0, self.tracker.last_seq - (self.next_seq - 1))

    async def receive(self) -> None:
        try:
            await self._receive()
        except grpc.aio.AioRpcError as error:
            if not (self.closing and error.code() == grpc.StatusCode.CANCELLED):
                self._ended(f"{error.code().name}: {error.details()}")
            return
        if not self.closing:
            self._ended("ended by the server without a status")

    def _ended(self, reason: str) -> None:
        self.error = reason
        self.window.fail(f"a stream of channel {self.tracker.channel_id} ended: {reason}")

    async def _receive(self) -> None:
        read = self.call.read
        tracker = self.tracker
        channel_id = tracker.channel_id
        tag = tracker.tag
        window = self.window
        latencies = window.latencies
        rows = window.row_latencies
        offset = window.wall_offset
        # Copies inside the window until the next one whose row time is read.
        countdown = 1
        response = chat_pb2.ChatStreamResponse
        clock = time.monotonic_ns
        sent_from = payload.TAG_END
        sent_to = payload.SENT_END
        tag_to = payload.TAG_END
        batch: list[resources_pb2.Message]
        while True:
            frame = await read()
            if not isinstance(frame, response):
                return
            now = clock()
            kind = frame.WhichOneof("frame")
            if kind == "messages":
                batch = frame.messages.messages  # type: ignore[assignment]  # a repeated field
            elif kind == "message":
                batch = [frame.message]
            elif kind == "update":
                self._update(frame.update, now)
                continue
            else:
                self._control(frame, kind, now)
                continue
            opened = window.open_ns
            closed = window.close_ns
            good = 0
            for message in batch:
                text = message.content
                if message.channel_id != channel_id or text[:tag_to] != tag:
                    self.leaks += 1
                    continue
                seq = message.seq
                if seq != self.next_seq and not self._unexpected(seq):
                    continue
                self.next_seq = seq + 1
                tracker.received(seq)
                good += 1
                sent = int(text[sent_from:sent_to])
                if opened <= sent < closed:
                    latencies.append(now - sent)
                    countdown -= 1
                    if not countdown:
                        countdown = ROW_SAMPLE
                        created = message.created_at
                        rows.append(now + offset - created.seconds * 1_000_000_000 - created.nanos)
            window.copies += good
            window.frames += 1

    def _update(self, update: chat_pb2.ChatUpdate, now: int) -> None:
        """An edit or a reaction: a seq of the same gap-free order as messages.

        An edit's content carries the time it was made; a reaction's is the
        message's (sent earlier), so reactions are counted but not timed.
        """
        tracker = self.tracker
        window = self.window
        message = update.message
        text = message.content
        if message.channel_id != tracker.channel_id or text[: payload.TAG_END] != tracker.tag:
            self.leaks += 1
            return
        seq = update.seq
        window.frames += 1
        if seq != self.next_seq and not self._unexpected(seq):
            return
        self.next_seq = seq + 1
        tracker.received(seq)
        window.copies += 1
        window.updates += 1
        if update.kind == chat_pb2.UPDATE_KIND_EDITED:
            sent = payload.sent_ns(text)
            if window.open_ns <= sent < window.close_ns:
                window.latencies.append(now - sent)
                window.edit_latencies.append(now - sent)

    def _unexpected(self, seq: int) -> bool:
        """A seq other than the next one: True if it still counts as received."""
        if seq > self.next_seq:
            self.missing.update(range(self.next_seq, seq))
            return True
        if seq in self.missing:
            self.missing.discard(seq)
            self.out_of_order += 1
            self.tracker.received(seq)
            self.window.copies += 1
        else:
            self.duplicates += 1
        return False

    def _control(self, frame: chat_pb2.ChatStreamResponse, kind: str | None, now: int) -> None:
        if self.acks is None:
            return
        if kind == "ack":
            self.acks.acknowledged(frame.ack, now)
        elif kind == "error":
            self.acks.refused(frame.error)
