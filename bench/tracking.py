"""What a channel's streams have received, and the send window that follows from it.

A seq is delivered once every stream of its channel has received it: a
message, or an update (an edit or a reaction, which takes the channel's next
seq like a message). Senders may have at most `window` events sent but not
yet delivered, so no stream's server-side buffer can pass that many frames
(plus its acks).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench import payload

# Each stream reads the row time of one copy in ROW_SAMPLE of those sent inside the
# window (its first such copy, then every eighth): a copy's created_at costs a
# submessage and two fields to read.
ROW_SAMPLE = 8


@dataclass(slots=True)
class Window:
    """The measurement window shared by every stream of this process."""

    open_ns: int = 1 << 62
    close_ns: int = 1 << 62
    # Running totals of copies received (messages and updates alike, one per
    # seq and stream), of the frames that carried them, of update copies, and
    # of the acks the senders got.
    copies: int = 0
    frames: int = 0
    updates: int = 0
    acks: int = 0
    # Send-to-receipt latencies of messages and edits; edits' also on their own;
    # send-to-ack latencies of the sends.
    latencies: list[int] = field(default_factory=list)
    edit_latencies: list[int] = field(default_factory=list)
    ack_latencies: list[int] = field(default_factory=list)
    # Where a message's time went, by its row time (created_at: its transaction's
    # now(), wall clock, taken to the monotonic clock by `wall_offset`): send to row
    # time, from each ack of a send made inside the window; row time to receipt,
    # from one copy in ROW_SAMPLE of those sent inside the window, on every stream.
    send_row_latencies: list[int] = field(default_factory=list)
    row_latencies: list[int] = field(default_factory=list)
    wall_offset: int = field(default_factory=lambda: time.time_ns() - time.monotonic_ns())
    failure: str = ""
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    _opened: tuple[int, int, int, int] = (0, 0, 0, 0)
    _closed: tuple[int, int, int, int] = (0, 0, 0, 0)

    def open(self) -> None:
        self.open_ns = time.monotonic_ns()
        self._opened = (self.copies, self.frames, self.updates, self.acks)

    def close(self) -> None:
        self.close_ns = time.monotonic_ns()
        self._closed = (self.copies, self.frames, self.updates, self.acks)

    @property
    def copies_inside(self) -> int:
        return self._closed[0] - self._opened[0]

    @property
    def frames_inside(self) -> int:
        return self._closed[1] - self._opened[1]

    @property
    def updates_inside(self) -> int:
        return self._closed[2] - self._opened[2]

    @property
    def acks_inside(self) -> int:
        return self._closed[3] - self._opened[3]

    def fail(self, reason: str) -> None:
        if not self.failure:
            self.failure = reason
        self.failed.set()


class ChannelTracker:
    def __init__(self, channel_id: int, streams: int) -> None:
        self.channel_id = channel_id
        self.tag = payload.tag(channel_id)
        self.streams = streams
        # Events (sends, edits, reactions) issued and not refused; seqs
        # 1..delivered reached every stream; events the server answered.
        self.sent = 0
        self.delivered = 0
        self.acked = 0
        # Of those, the sends (each stored one message).
        self.acked_sends = 0
        self.last_seq = 0
        self.stalls = 0
        self.released = False
        self._counts: dict[int, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def received(self, seq: int) -> None:
        counts = self._counts
        count = counts.get(seq, 0) + 1
        counts[seq] = count
        if count < self.streams or seq != self.delivered + 1:
            return
        delivered = seq
        del counts[seq]
        while counts.get(delivered + 1) == self.streams:
            delivered += 1
            del counts[delivered]
        self.delivered = delivered
        self.wake()

    def acknowledged(self, seq: int) -> None:
        """A send acked with its message's seq."""
        self.acked += 1
        self.acked_sends += 1
        self.last_seq = max(self.last_seq, seq)

    def applied(self) -> None:
        """An edit or reaction answered: it took a seq its answer does not name."""
        self.acked += 1
        self.wake()

    def refused(self) -> None:
        self.sent -= 1
        self.wake()

    def wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def changed(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def room(self, window: int) -> None:
        """Wait until fewer than `window` messages are in flight (or the run ends)."""
        if self.sent - self.delivered >= window and not self.released:
            self.stalls += 1
        while self.sent - self.delivered >= window and not self.released:
            await self.changed()

    def release(self) -> None:
        """End of the run: nobody waits for room any more."""
        self.released = True
        self.wake()

    @property
    def settled(self) -> bool:
        return self.delivered >= self.sent
