"""A sender: `send` frames on its own chat stream, each waiting for its `ack`.

Flat out, a sender sends whenever its channel's delivery window and its own
ack window allow. Paced, it sends on a fixed schedule (its share of the
channel's rate) and the windows only guard against overload.
"""

from __future__ import annotations

import asyncio
import time

from atomchat.v1 import chat_pb2

from bench import payload
from bench.streams import Stream


class Sender:
    def __init__(
        self, stream: Stream, index: int, *, window: int, ack_window: int, size: int
    ) -> None:
        self._stream = stream
        self._tracker = stream.tracker
        self._index = index
        self._window = window
        self._ack_window = ack_window
        self._size = size
        self.sequence = 0
        self.unacked = 0
        self.errors = 0
        self.stopping = False
        stream.acks = self

    def acknowledged(self, ack: chat_pb2.ChatAck) -> None:
        self.unacked -= 1
        self._tracker.acknowledged(ack.message.seq)
        self._tracker.wake()

    def refused(self, error: chat_pb2.ChatError) -> None:
        self.unacked -= 1
        self.errors += 1
        self._tracker.refused()

    async def _ack_room(self) -> None:
        while self.unacked >= self._ack_window and not self._tracker.released:
            await self._tracker.changed()

    async def run(self, *, interval: float | None, offset: float) -> None:
        """Send until `stopping`: flat out (interval None) or one message per interval."""
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
            text = payload.content(
                tracker.tag, time.monotonic_ns(), self._index, self.sequence, self._size
            )
            send = chat_pb2.ChatSend(
                content=text, client_message_id=f"{self._index}-{self.sequence}"
            )
            tracker.sent += 1
            self.unacked += 1
            await write(chat_pb2.ChatStreamRequest(send=send))

    async def settle(self) -> None:
        """Wait for the acks of everything sent (or the end of the run)."""
        while self.unacked > 0 and not self._tracker.released:
            await self._tracker.changed()
