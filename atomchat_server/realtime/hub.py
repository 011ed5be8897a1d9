"""Per-channel subscribers in this process, each with a bounded buffer.

The hub is handed every committed message of the channels it has
subscribers for (already encoded once, whatever the number of subscribers)
and appends it to each subscriber's buffer; it never waits for anyone. A
subscriber whose buffer passes its limit is closed with RESOURCE_EXHAUSTED
and dropped from the channel: the channel never slows down for a slow
reader, and the reader can resume by seq.

Closing is how a stream learns it must end: blocking a user, removing a
member, deleting a channel and shutting down close the affected subscribers
with the error their stream ends with.

Heartbeats: one sweep per heartbeat interval marks every subscriber that
sent nothing since the previous sweep, and wakes it to send a heartbeat. No
per-stream timer is armed or cancelled on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from atomchat_server.domain import errors
from atomchat_server.domain.entities import MessageView


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


Item = TypeVar("Item", bound=Sequenced)


class Subscriber(Generic[Item]):
    """One stream's view of one channel: a bounded buffer of encoded messages."""

    __slots__ = (
        "_items",
        "_limit",
        "_waiter",
        "active",
        "channel_id",
        "closed",
        "control",
        "heartbeat_due",
        "is_moderator",
        "user_id",
    )

    def __init__(self, channel_id: int, user_id: int, *, is_moderator: bool, limit: int) -> None:
        self.channel_id = channel_id
        self.user_id = user_id
        self.is_moderator = is_moderator
        self.closed: errors.DomainError | None = None
        self.control: deque[bytes] = deque()
        self._items: deque[Item] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        # Set by the stream whenever it sends; cleared by the heartbeat sweep.
        self.active = True
        self.heartbeat_due = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, item: Item) -> bool:
        """Buffer a message; False (and closed) if the reader fell too far behind."""
        if self.closed is not None:
            return False
        if len(self._items) + len(self.control) >= self._limit:
            self.close(
                errors.ResourceExhausted(
                    "Too far behind: resume with after_seq", reason="SUBSCRIBER_TOO_SLOW"
                )
            )
            return False
        self._items.append(item)
        self._wake()
        return True

    def push_control(self, frame: bytes) -> None:
        """Queue a frame for this stream alone (an ack or an error)."""
        if self.closed is None:
            self.control.append(frame)
            self._wake()

    def close(self, error: errors.DomainError) -> None:
        if self.closed is None:
            self.closed = error
            self._items.clear()
            self._wake()

    def request_heartbeat(self) -> None:
        self.heartbeat_due = True
        self._wake()

    async def wait(self) -> None:
        """Wait until there is something to send, a heartbeat is due, or the end."""
        if self._items or self.control or self.closed or self.heartbeat_due:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` buffered messages, oldest first."""
        items = self._items
        if len(items) <= limit:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(limit)]


class Hub(Generic[Item]):
    def __init__(
        self,
        encode: Callable[[MessageView], Item],
        *,
        buffer_limit: int,
        heartbeat_seconds: float,
    ) -> None:
        self._encode = encode
        self._buffer_limit = buffer_limit
        self._heartbeat_seconds = heartbeat_seconds
        self._channels: dict[int, set[Subscriber[Item]]] = {}
        self._last_seq: dict[int, int] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="heartbeat-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            for subscribers in self._channels.values():
                for subscriber in subscribers:
                    if not subscriber.active:
                        subscriber.request_heartbeat()
                    subscriber.active = False

    def subscribe(self, channel_id: int, user_id: int, *, is_moderator: bool) -> Subscriber[Item]:
        subscriber: Subscriber[Item] = Subscriber(
            channel_id, user_id, is_moderator=is_moderator, limit=self._buffer_limit
        )
        self._channels.setdefault(channel_id, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber[Item]) -> None:
        members = self._channels.get(subscriber.channel_id)
        if members is None:
            return
        members.discard(subscriber)
        if not members:
            del self._channels[subscriber.channel_id]
            self._last_seq.pop(subscriber.channel_id, None)

    def channels(self) -> dict[int, int]:
        """Channels with subscribers here, with the highest seq seen in each (0 if none)."""
        return {channel: self._last_seq.get(channel, 0) for channel in self._channels}

    def subscribers(self, channel_id: int) -> list[Subscriber[Item]]:
        return list(self._channels.get(channel_id, ()))

    def publish(self, channel_id: int, messages: Iterable[MessageView]) -> None:
        subscribers = self._channels.get(channel_id)
        if not subscribers:
            return
        slow: list[Subscriber[Item]] = []
        last = self._last_seq.get(channel_id, 0)
        for message in messages:
            item = self._encode(message)
            last = max(last, message.seq)
            for subscriber in subscribers:
                if not subscriber.push(item):
                    slow.append(subscriber)
        self._last_seq[channel_id] = last
        for subscriber in slow:
            self.unsubscribe(subscriber)

    def _close_where(
        self,
        error: errors.DomainError,
        keep: Callable[[Subscriber[Item]], bool],
        channel_ids: Iterable[int],
    ) -> None:
        for channel_id in list(channel_ids):
            for subscriber in list(self._channels.get(channel_id, ())):
                if not keep(subscriber):
                    subscriber.close(error)
                    self.unsubscribe(subscriber)

    def close_user(self, user_id: int, error: errors.DomainError) -> None:
        self._close_where(error, lambda s: s.user_id != user_id, self._channels)

    def close_member(
        self, channel_id: int, user_id: int, error: errors.DomainError, *, spare_moderators: bool
    ) -> None:
        self._close_where(
            error,
            lambda s: s.user_id != user_id or (spare_moderators and s.is_moderator),
            [channel_id],
        )

    def close_channel(self, channel_id: int, error: errors.DomainError) -> None:
        self._close_where(error, lambda s: False, [channel_id])

    def close_all(self, error: errors.DomainError) -> None:
        self._close_where(error, lambda s: False, self._channels)
