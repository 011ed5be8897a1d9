"""One stream's writer: history, then the live timeline, in seq order, no gap, no duplicate.

Seqs are gap-free per channel (messages and the updates to them share them),
so "what this stream still owes its reader" is always a range of seqs. A
stream subscribes to the hub first, then reads the channel's last seq; its
history (recent messages in their current state) is sent first, then
everything from its starting point to that seq is read from the database in
pages (a resume with after_seq), and everything after arrives in its hub
buffer. Entries the stream has already sent are skipped; a gap before a live
entry (one that reached the hub out of order, or was missed while the bus
reconnected) is filled from the database before the entry is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from atomchat_server.realtime.hub import Subscriber


class Encoded(Protocol):
    """A timeline entry encoded once for every stream: as a whole frame and, for a
    message everyone sees alike, as a batch part (None: it goes in a frame of its own)."""

    @property
    def seq(self) -> int: ...

    @property
    def frame(self) -> bytes: ...

    @property
    def part(self) -> bytes | None: ...

    def frame_for(self, user_id: int) -> bytes:
        """The frame as this user sees it (their own reactions differ)."""
        ...


# fetch(first_seq, last_seq): up to a page of the messages in that inclusive range.
Fetch = Callable[[int, int], Awaitable[Sequence[Encoded]]]
Write = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Framing:
    batch: Callable[[Sequence[bytes]], bytes]
    heartbeat: Callable[[], bytes]


class Delivery:
    __slots__ = ("_fetch", "_framing", "_last", "_max_batch", "_subscriber", "_write")

    def __init__(
        self,
        subscriber: Subscriber[Encoded],
        *,
        start_after: int,
        fetch: Fetch,
        write: Write,
        framing: Framing,
        max_batch: int,
    ) -> None:
        self._subscriber = subscriber
        self._last = start_after
        self._fetch = fetch
        self._write = write
        self._framing = framing
        self._max_batch = max(1, max_batch)

    async def run(self, *, history: Sequence[Encoded] = (), catch_up_to: int) -> None:
        """Send `history`, then the timeline up to `catch_up_to`, then live entries
        until the subscriber closes.

        Raises the error the subscriber was closed with, after sending the acks
        and errors it had queued.
        """
        subscriber = self._subscriber
        subscriber.writer = asyncio.current_task()
        await self._send(history)
        del history  # sent: the stream lives on without it
        await self._fill(catch_up_to)
        single = self._max_batch == 1
        while True:
            await subscriber.wait()
            subscriber.active = True
            if subscriber.ends_with is None:
                items = subscriber.take(self._max_batch * 8)
                if single and items:
                    await self._send_frames(items)
                elif items:
                    await self._send_live(items)
                elif subscriber.heartbeat_due and not subscriber.control:
                    await self._write(self._framing.heartbeat())
                subscriber.heartbeat_due = False
            while subscriber.control:
                await self._write(subscriber.control.pop(0))
            if subscriber.ends_with is not None:
                raise subscriber.ends_with

    async def _send_frames(self, items: Sequence[Encoded]) -> None:
        """`_send_live` one frame per entry, without a coroutine per entry or per run."""
        write = self._write
        user_id = self._subscriber.user_id
        for item in items:
            seq = item.seq
            if seq <= self._last:
                continue
            if seq > self._last + 1:
                await self._fill(seq - 1)
            self._last = seq
            await write(item.frame_for(user_id))

    async def _send_live(self, items: Sequence[Encoded]) -> None:
        pending: list[Encoded] = []
        for item in items:
            if item.seq <= self._last:
                continue
            if item.seq > self._last + 1:
                await self._send(pending)
                pending = []
                await self._fill(item.seq - 1)
            pending.append(item)
            self._last = item.seq
        await self._send(pending)

    async def _fill(self, up_to: int) -> None:
        """Send every message after the last one sent, up to seq `up_to`, from the database."""
        while self._last < up_to:
            page = await self._fetch(self._last + 1, up_to)
            if not page:
                return
            await self._send(page)
            self._last = page[-1].seq

    async def _send(self, items: Sequence[Encoded]) -> None:
        """Each entry as this stream's reader sees it; consecutive messages in batches
        of up to max_batch when the reader asked for batches."""
        size = self._max_batch
        if size == 1:
            user_id = self._subscriber.user_id
            for item in items:
                await self._write(item.frame_for(user_id))
            return
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            parts = [item.part for item in chunk]
            if None in parts:
                await self._send_mixed(chunk)
            elif len(parts) == 1:
                await self._write(chunk[0].frame)
            else:
                await self._write(self._framing.batch(cast("list[bytes]", parts)))

    async def _send_mixed(self, chunk: Sequence[Encoded]) -> None:
        """Entries that go alone in their own frames, the messages between them in batches."""
        user_id = self._subscriber.user_id
        run: list[Encoded] = []
        for item in chunk:
            if item.part is not None:
                run.append(item)
                continue
            await self._send_run(run)
            run = []
            await self._write(item.frame_for(user_id))
        await self._send_run(run)

    async def _send_run(self, run: Sequence[Encoded]) -> None:
        if len(run) == 1:
            await self._write(run[0].frame)
        elif run:
            await self._write(self._framing.batch([i.part for i in run if i.part is not None]))
