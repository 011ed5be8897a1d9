"""A sender: `send` frames on its own chat stream, each waiting for its `ack`.

Flat out, a sender sends whenever its channel's delivery window and its own
ack window allow. Paced, it sends on a fixed schedule (its share of the
channel's rate) and the windows only guard against overload.

With a timeline share, that share of a sender's events are edits and
reactions instead of `send` frames: unary calls on the stream's connection,
on the sender's own recent acked messages. Every one takes the channel's next
seq and reaches the streams as an `update` frame, so it counts in the same
windows as a send. Turns alternate between an edit (new content carrying a
fresh send time) and a reaction; reactions alternate between adding one to
a message the sender never reacted to and taking back one whose addition was
answered, so none is a no-op that would take no seq.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable

import grpc
from atomchat.v1 import chat_pb2, resources_pb2
from google.rpc import code_pb2

from bench import payload
from bench.streams import Stream

EDIT_MESSAGE = "/atomchat.v1.ChatService/EditMessage"
ADD_REACTION = "/atomchat.v1.ChatService/AddReaction"
REMOVE_REACTION = "/atomchat.v1.ChatService/RemoveReaction"
EMOJI = "👍"
# Own acked messages a sender keeps at hand to edit and react to.
RECENT = 64


class Sender:
    def __init__(
        self,
        stream: Stream,
        index: int,
        *,
        window: int,
        ack_window: int,
        size: int,
        connection: grpc.aio.Channel | None = None,
        token: str = "",
        timeline_share: float = 0.0,
    ) -> None:
        self._stream = stream
        self._tracker = stream.tracker
        self._index = index
        self._window = window
        self._ack_window = ack_window
        self._size = size
        self._share = timeline_share
        # Timeline events owed: grows by the share with every event.
        self._credit = 0.0
        # Every other sender begins with a reaction: at a slow pace a sender may
        # get only one turn in a window.
        self._turn = index % 2
        self._recent: deque[int] = deque(maxlen=RECENT)
        self._unreacted: deque[int] = deque(maxlen=RECENT)
        self._reacted: deque[int] = deque()
        self._calls: set[asyncio.Task[None]] = set()
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._edit: Callable[..., Awaitable[resources_pb2.Message]] | None = None
        self._add: Callable[..., Awaitable[resources_pb2.Message]] | None = None
        self._remove: Callable[..., Awaitable[resources_pb2.Message]] | None = None
        if timeline_share > 0:
            if connection is None:
                raise ValueError("a timeline share needs the stream's connection")
            decode = resources_pb2.Message.FromString
            self._edit = connection.unary_unary(
                EDIT_MESSAGE,
                request_serializer=chat_pb2.EditMessageRequest.SerializeToString,
                response_deserializer=decode,
            )
            self._add = connection.unary_unary(
                ADD_REACTION,
                request_serializer=chat_pb2.AddReactionRequest.SerializeToString,
                response_deserializer=decode,
            )
            self._remove = connection.unary_unary(
                REMOVE_REACTION,
                request_serializer=chat_pb2.RemoveReactionRequest.SerializeToString,
                response_deserializer=decode,
            )
        self.sequence = 0
        self.unacked = 0
        self.errors = 0
        # Sends the server refused on the stream, by status code.
        self.refusals: Counter[str] = Counter()
        self.edits = 0
        self.reactions = 0
        self.call_errors: Counter[str] = Counter()
        self.stopping = False
        stream.acks = self

    def acknowledged(self, ack: chat_pb2.ChatAck, now: int) -> None:
        """A send answered at `now`: its latency counts if it was sent inside the window."""
        self.unacked -= 1
        self._tracker.acknowledged(ack.message.seq)
        window = self._stream.window
        window.acks += 1
        sent = payload.sent_ns(ack.message.content)
        if window.open_ns <= sent < window.close_ns:
            window.ack_latencies.append(now - sent)
            created = ack.message.created_at
            row = created.seconds * 1_000_000_000 + created.nanos - window.wall_offset
            window.send_row_latencies.append(row - sent)
        if self._share:
            self._recent.append(ack.message.id)
            self._unreacted.append(ack.message.id)
        self._tracker.wake()

    def refused(self, error: chat_pb2.ChatError) -> None:
        self.unacked -= 1
        self.errors += 1
        self.refusals[code_pb2.Code.Name(error.code)] += 1
        self._tracker.refused()

    async def _ack_room(self) -> None:
        while self.unacked >= self._ack_window and not self._tracker.released:
            await self._tracker.changed()

    async def run(self, *, interval: float | None, offset: float) -> None:
        """Send until `stopping`: flat out (interval None) or one event per interval."""
        tracker = self._tracker
        write = self._stream.call.write
        loop = asyncio.get_running_loop()
        next_at = loop.time() + offset
        while not self.stopping:
            if interval is not None:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            await tracker.room(self._window)
            await self._ack_room()
            if self.stopping or tracker.released:
                return
            self.sequence += 1
            tracker.sent += 1
            self.unacked += 1
            if self._share and self._timeline_turn():
                continue
            text = payload.content(
                tracker.tag, time.monotonic_ns(), self._index, self.sequence, self._size
            )
            send = chat_pb2.ChatSend(
                content=text, client_message_id=f"{self._index}-{self.sequence}"
            )
            await write(chat_pb2.ChatStreamRequest(send=send))

    def _timeline_turn(self) -> bool:
        """Start an edit or a reaction if one is due (and a message is at hand)."""
        self._credit += self._share
        if self._credit < 1.0 or not self._recent:
            return False
        self._credit -= 1.0
        self._turn += 1
        channel_id = self._tracker.channel_id
        call: Awaitable[resources_pb2.Message]
        reacted: int | None = None
        if self._turn % 2 == 0 and self._reacted:
            assert self._remove is not None
            request = chat_pb2.RemoveReactionRequest(
                channel_id=channel_id, message_id=self._reacted.popleft(), emoji=EMOJI
            )
            call = self._remove(request, metadata=self._metadata)
            self.reactions += 1
        elif self._turn % 2 == 0 and self._unreacted:
            assert self._add is not None
            reacted = self._unreacted.pop()
            request_add = chat_pb2.AddReactionRequest(
                channel_id=channel_id, message_id=reacted, emoji=EMOJI
            )
            call = self._add(request_add, metadata=self._metadata)
            self.reactions += 1
        else:
            assert self._edit is not None
            text = payload.content(
                self._tracker.tag, time.monotonic_ns(), self._index, self.sequence, self._size
            )
            edit = chat_pb2.EditMessageRequest(
                channel_id=channel_id, message_id=self._recent[-1], content=text
            )
            call = self._edit(edit, metadata=self._metadata)
            self.edits += 1
        task = asyncio.create_task(self._answered(call, reacted))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        return True

    async def _answered(self, call: Awaitable[resources_pb2.Message], reacted: int | None) -> None:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            self.unacked -= 1
            self.errors += 1
            self.call_errors[f"{error.code().name}: {error.details()}"] += 1
            self._tracker.refused()
            return
        self.unacked -= 1
        if reacted is not None:
            self._reacted.append(reacted)
        self._tracker.applied()

    async def settle(self) -> None:
        """Wait for the answers to everything sent (or the end of the run)."""
        while self.unacked > 0 and not self._tracker.released:
            await self._tracker.changed()

    def close(self) -> None:
        """Cancel the edits and reactions still unanswered (a failed run's)."""
        for task in self._calls:
            task.cancel()
