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

Time comes from a `Clock` (the event loop's, unless a test gives its own),
so fan-out rounds and heartbeat sweeps can be driven step by step.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from atomchat_server.domain import errors
from atomchat_server.domain.entities import TimelineEntry
from atomchat_server.observability import metrics

log = logging.getLogger(__name__)


def _seq(entry: TimelineEntry) -> int:
    return entry.seq


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the hub needs of time: the time now, and a callback at a time."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The clock of the event loop it is first used on.

    The loop is kept: asking asyncio for the running loop costs a system
    call (getpid) each time, and the hub asks on every post.
    """

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bound(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def time(self) -> float:
        return self._bound().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return self._bound().call_at(when, callback)


# How long the writer of a stream that fell behind may stay stuck in one write.
STALL_SECONDS = 30.0


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


Item = TypeVar("Item", bound=Sequenced)


class Subscriber(Generic[Item]):
    """One stream's view of one channel: a bounded buffer of encoded messages."""

    __slots__ = (
        "_items",
        "_limit",
        "_loop",
        "_stall_seconds",
        "_waiter",
        "active",
        "batches",
        "channel_id",
        "control",
        "ends_with",
        "group",
        "heartbeat_due",
        "is_moderator",
        "user_id",
        "writer",
    )

    def __init__(
        self,
        channel_id: int,
        user_id: int,
        *,
        is_moderator: bool,
        limit: int,
        stall_seconds: float = STALL_SECONDS,
        batches: bool = False,
    ) -> None:
        self.channel_id = channel_id
        self.user_id = user_id
        self.is_moderator = is_moderator
        # Whether its stream puts several messages in a frame (max_batch > 1),
        # and then the hub's group of it (see `GROUP_SIZE`).
        self.batches = batches
        self.group: _Group[Item] | None = None
        # The error the stream ends with, once the subscriber is closed: a
        # DomainError, or what its reader failed with.
        self.ends_with: Exception | None = None
        # Lists, not deques: an empty deque costs 760 bytes, and most streams sit
        # idle with both empty.
        self.control: list[bytes] = []
        self._items: list[Item] = []
        self._limit = limit
        self._stall_seconds = stall_seconds
        self._waiter: asyncio.Future[None] | None = None
        # The writer's loop, kept at its first wait: asking asyncio for the
        # running loop costs a system call (getpid), and a writer waits after
        # every frame it has sent when its stream is not busy.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The task that writes this stream, once it runs (see `_fall_behind`).
        self.writer: asyncio.Task[Any] | None = None
        # Set by the stream whenever it sends; cleared by the heartbeat sweep.
        self.active = True
        self.heartbeat_due = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _full(self) -> bool:
        return len(self._items) + len(self.control) >= self._limit

    def push(self, item: Item) -> bool:
        """Buffer a message; False (and closed) if the reader fell too far behind."""
        if self.ends_with is not None:
            return False
        if self._full():
            self._fall_behind()
            return False
        self._items.append(item)
        self._wake()
        return True

    def push_control(self, frame: bytes) -> None:
        """Queue a frame for this stream alone (an ack or an error); it counts like a message."""
        if self.ends_with is not None:
            return
        if self._full():
            self._fall_behind()
            return
        self.control.append(frame)
        self._wake()

    def _fall_behind(self) -> None:
        """End a stream whose reader takes nothing: RESOURCE_EXHAUSTED, nothing more queued.

        The writer may be stuck in a write the reader never lets through (no
        flow-control window): if it still is after the grace period, its task
        is cancelled, which resets the stream.
        """
        metrics.SLOW_READERS_ENDED.inc()
        self.close(
            errors.ResourceExhausted(
                "Too far behind: resume with after_seq", reason=errors.Reason.SUBSCRIBER_TOO_SLOW
            )
        )
        self.control.clear()
        writer = self.writer
        if writer is not None and not writer.done():
            asyncio.get_running_loop().call_later(self._stall_seconds, _cancel_stalled, writer)

    def close(self, error: Exception) -> None:
        if self.ends_with is None:
            self.ends_with = error
            self._items.clear()
            self._wake()

    def request_heartbeat(self) -> None:
        self.heartbeat_due = True
        self._wake()

    def wait(self) -> Awaitable[None]:
        """Done once there is something to send, a heartbeat is due, or the end.

        While there is nothing, a bare future: an idle stream waits in it for
        hours, with no coroutine of this method's kept alive meanwhile.
        """
        if self._items or self.control or self.ends_with or self.heartbeat_due:
            return _ready()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        return waiter

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` buffered messages, oldest first."""
        items = self._items
        if len(items) <= limit:
            self._items = []
            return items
        taken = items[:limit]
        del items[:limit]
        return taken


async def _ready() -> None:
    return None


def _cancel_stalled(writer: asyncio.Task[Any]) -> None:
    if not writer.done():
        log.info("cancelling a stream whose reader let nothing through")
        writer.cancel()


# fetch(channel_id, first_seq, last_seq): the stored messages in that inclusive range.
FetchRange = Callable[[int, int, int], Awaitable[Sequence[TimelineEntry]]]

HELD_LIMIT = 10_000
# A fan-out round costs about 50 µs of the event loop per subscriber (one gRPC
# write). Each round reserves 70 µs of the process's fan-out time for every
# subscriber it writes to, and the next round of any channel starts when the
# reservation is over: fan-out takes at most about 70% of the loop however many
# channels are busy, and the messages that arrive meanwhile share a round (one
# frame each, for streams that accept batches). Streams that take a frame per
# copy reserve nothing: their copies cost one write each whatever the wait, so
# they get them at once. (100 µs before the groups below, when a round wrote
# to a whole channel at once; bench/README.md, 2026-12-05 evening.)
ROUND_SECONDS_PER_SUBSCRIBER = 70e-6
# A channel's streams that batch are split into groups of at most this many,
# each with rounds of its own: a busy channel's rounds go out a group at a
# time, spread over the reservation, and a copy waits for its group's next
# round only, not for a whole channel's writes queued before it. A channel
# whose rounds all went out (a quiet one) still sends a message to every group
# at once.
GROUP_SIZE = 50
# What the sums of reserved times may be off by, in seconds.
_ROUNDING = 1e-9


class _Group(Generic[Item]):
    """Subscribers of one channel whose copies go out in the same rounds."""

    __slots__ = ("entries", "items", "round_timer", "subscribers")

    def __init__(self) -> None:
        self.subscribers: set[Subscriber[Item]] = set()
        # What waits for the group's next round (the entries for the metrics,
        # the same encoded for the streams), and its timer.
        self.entries: list[TimelineEntry] = []
        self.items: list[Item] = []
        self.round_timer: Timer | None = None


class _Feed(Generic[Item]):
    """One channel in this process: its subscribers, and the seq it expects next."""

    __slots__ = (
        "batching",
        "exists_to",
        "filling",
        "groups",
        "held",
        "next_seq",
        "single",
        "subscribers",
    )

    def __init__(self) -> None:
        self.subscribers: set[Subscriber[Item]] = set()
        # Unknown until the first message arrives; from then on messages are
        # handed out in seq order, and early ones wait in `held`.
        self.next_seq: int | None = None
        self.held: dict[int, TimelineEntry] = {}
        # Every message up to this seq is known to be committed.
        self.exists_to = 0
        self.filling = False
        # Subscribers whose streams take a frame per copy: theirs go out at once.
        self.single: set[Subscriber[Item]] = set()
        # The groups of subscribers whose streams batch messages, and how many
        # those are: what a round's wait saves.
        self.groups: list[_Group[Item]] = []
        self.batching = 0

    def missing_to(self) -> int:
        """The last seq this channel knows of but has not handed out (or less)."""
        return max(self.exists_to, min(self.held) - 1 if self.held else 0)

    def join_group(self, subscriber: Subscriber[Item], size: int) -> _Group[Item]:
        """The smallest group, or a new one if every group has `size` subscribers."""
        groups = self.groups
        group = min(groups, key=_group_size) if groups else None
        if group is None or len(group.subscribers) >= size:
            group = _Group()
            groups.append(group)
        group.subscribers.add(subscriber)
        return group


def _group_size(group: _Group[Any]) -> int:
    return len(group.subscribers)


class Hub(Generic[Item]):
    """Subscribers by channel; messages handed out once, in seq order.

    Messages can reach a process out of order (its own commit and another
    process's notification race; a message too large for a notification is
    read back later; the bus may have been disconnected). The hub holds
    messages that arrive early and reads the missing ones from the database
    once per channel, so subscribers see every channel in order and never
    query the database themselves on the live path.
    """

    def __init__(
        self,
        encode: Callable[[TimelineEntry], Item],
        fetch: FetchRange,
        *,
        buffer_limit: int,
        heartbeat_seconds: float,
        stall_seconds: float = STALL_SECONDS,
        clock: Clock | None = None,
        round_seconds_per_subscriber: float = ROUND_SECONDS_PER_SUBSCRIBER,
        group_size: int = GROUP_SIZE,
    ) -> None:
        self._encode = encode
        self._fetch = fetch
        self._buffer_limit = buffer_limit
        self._heartbeat_seconds = heartbeat_seconds
        self._stall_seconds = stall_seconds
        self._clock: Clock = clock or LoopClock()
        self._round_cost = round_seconds_per_subscriber
        self._group_size = group_size
        self._feeds: dict[int, _Feed[Item]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep_timer: Timer | None = None
        # Until when the fan-out time already reserved by rounds lasts.
        self._fan_out_until = 0.0

    def start(self) -> None:
        self._schedule_sweep()

    async def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_sweep(self) -> None:
        when = self._clock.time() + self._heartbeat_seconds
        self._sweep_timer = self._clock.call_at(when, self._sweep)

    def _sweep(self) -> None:
        for feed in self._feeds.values():
            for subscriber in feed.subscribers:
                if not subscriber.active:
                    subscriber.request_heartbeat()
                subscriber.active = False
        self._schedule_sweep()

    def subscribe(
        self, channel_id: int, user_id: int, *, is_moderator: bool, batches: bool
    ) -> Subscriber[Item]:
        """A subscriber to the channel; `batches`: its stream puts several messages
        in a frame."""
        subscriber: Subscriber[Item] = Subscriber(
            channel_id,
            user_id,
            is_moderator=is_moderator,
            limit=self._buffer_limit,
            stall_seconds=self._stall_seconds,
            batches=batches,
        )
        feed = self._feeds.get(channel_id)
        if feed is None:
            feed = self._feeds[channel_id] = _Feed()
        feed.subscribers.add(subscriber)
        if batches:
            subscriber.group = feed.join_group(subscriber, self._group_size)
            feed.batching += 1
        else:
            feed.single.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber[Item]) -> None:
        feed = self._feeds.get(subscriber.channel_id)
        if feed is None or subscriber not in feed.subscribers:
            return
        feed.subscribers.remove(subscriber)
        group = subscriber.group
        if group is None:
            feed.single.discard(subscriber)
        else:
            subscriber.group = None
            feed.batching -= 1
            group.subscribers.discard(subscriber)
            if not group.subscribers:
                feed.groups.remove(group)
                if group.round_timer is not None:
                    group.round_timer.cancel()
        if not feed.subscribers:
            del self._feeds[subscriber.channel_id]

    def channels(self) -> dict[int, int]:
        """Channels with subscribers here, with the last seq handed out (0 if none yet)."""
        return {channel: (feed.next_seq or 1) - 1 for channel, feed in self._feeds.items()}

    def subscribers(self, channel_id: int) -> list[Subscriber[Item]]:
        feed = self._feeds.get(channel_id)
        return list(feed.subscribers) if feed is not None else []

    def publish(self, channel_id: int, messages: Iterable[TimelineEntry]) -> None:
        """Hand out committed messages (in any order; repeats are ignored)."""
        feed = self._feeds.get(channel_id)
        if feed is None:
            return
        ready: list[TimelineEntry] = []
        for message in sorted(messages, key=_seq):
            if feed.next_seq is None or message.seq == feed.next_seq:
                ready.append(message)
                feed.next_seq = message.seq + 1
                while feed.next_seq in feed.held:
                    ready.append(feed.held.pop(feed.next_seq))
                    feed.next_seq += 1
            elif message.seq > feed.next_seq:
                feed.held[message.seq] = message
        if ready:
            self._hand_out(feed, ready)
        if len(feed.held) > HELD_LIMIT:
            self._give_up_waiting(feed)
        self._fill_if_missing(channel_id, feed)

    def advance_to(self, channel_id: int, last_seq: int, *, first_seq: int | None = None) -> None:
        """Messages up to `last_seq` exist (first_seq..last_seq are new): read the unseen ones."""
        feed = self._feeds.get(channel_id)
        if feed is None:
            return
        if feed.next_seq is None:
            if first_seq is None:
                # Nothing handed out here yet: where each stream stands is its
                # own. Hand out the last message; a stream that lacks some
                # before it reads them itself (realtime/delivery.py).
                if last_seq < 1:
                    return
                first_seq = last_seq
            feed.next_seq = first_seq
        feed.exists_to = max(feed.exists_to, last_seq)
        self._fill_if_missing(channel_id, feed)

    def _fill_if_missing(self, channel_id: int, feed: _Feed[Item]) -> None:
        """Start the channel's one reader of missed messages, unless one runs or none is missing."""
        if feed.filling or feed.next_seq is None or feed.next_seq > feed.missing_to():
            return
        feed.filling = True
        self._spawn(self._fill_from_store(channel_id, feed))

    async def _fill_from_store(self, channel_id: int, feed: _Feed[Item]) -> None:
        """Read until nothing known is missing; whatever becomes known meanwhile is read too."""
        try:
            while self._feeds.get(channel_id) is feed:
                expected, up_to = feed.next_seq, feed.missing_to()
                if expected is None or expected > up_to:
                    return
                self.publish(channel_id, await self._fetch(channel_id, expected, up_to))
                if feed.next_seq == expected:
                    log.warning(
                        "channel %d: messages %d-%d are not stored", channel_id, expected, up_to
                    )
                    self._give_up_waiting(feed)
                    return
        except Exception:
            log.exception("reading missed messages of channel %d failed", channel_id)
            self._give_up_waiting(feed)
        finally:
            feed.filling = False

    def _give_up_waiting(self, feed: _Feed[Item]) -> None:
        """Hand out what is held; each stream fills the gap from the database itself."""
        if not feed.held:
            return
        held = [feed.held[seq] for seq in sorted(feed.held)]
        feed.held.clear()
        feed.next_seq = held[-1].seq + 1
        self._hand_out(feed, held)

    def _hand_out(self, feed: _Feed[Item], messages: list[TimelineEntry]) -> None:
        """Messages in seq order: to the streams that take a frame per copy at once, and
        to each group of the others in its next round.

        A group's round goes out when the fan-out time reserved before it is over,
        less what the channel's other groups reserve: a quiet channel's message goes
        to every group at once, and a busy channel's groups take their turns, each
        when its share of the reservation comes.
        """
        items = [self._encode(message) for message in messages]
        if feed.single:
            metrics.observe_fanout(messages)
            self._push(feed.single, items)
        if not feed.groups:
            return
        now = self._clock.time()
        allowance = feed.batching * self._round_cost
        # A copy: a round can drop a group whose slow subscribers it ends.
        for group in tuple(feed.groups):
            group.entries.extend(messages)
            group.items.extend(items)
            if group.round_timer is not None:
                continue
            cost = len(group.subscribers) * self._round_cost
            reserved = max(now, self._fan_out_until)
            self._fan_out_until = reserved + cost
            start = reserved + cost - allowance
            if start <= now + _ROUNDING:
                self._round(feed, group)
            else:
                group.round_timer = self._clock.call_at(
                    start, functools.partial(self._round, feed, group)
                )

    def _round(self, feed: _Feed[Item], group: _Group[Item]) -> None:
        group.round_timer = None
        entries, group.entries = group.entries, []
        items, group.items = group.items, []
        metrics.observe_fanout(entries)
        self._push(group.subscribers, items)

    def _push(self, subscribers: set[Subscriber[Item]], items: list[Item]) -> None:
        slow: list[Subscriber[Item]] = []
        for item in items:
            for subscriber in subscribers:
                if not subscriber.push(item):
                    slow.append(subscriber)
        for subscriber in slow:
            self.unsubscribe(subscriber)

    def notify(self, channel_id: int, frame: bytes, *, skip_user: int) -> None:
        """Queue a frame for the channel's subscribers but the user's own (typing, presence);
        it counts toward their buffers like a message."""
        feed = self._feeds.get(channel_id)
        if feed is None:
            return
        slow: list[Subscriber[Item]] = []
        for subscriber in feed.subscribers:
            if subscriber.user_id != skip_user:
                subscriber.push_control(frame)
                if subscriber.ends_with is not None:
                    slow.append(subscriber)
        for subscriber in slow:
            self.unsubscribe(subscriber)

    def close_where(
        self,
        channel_id: int,
        error: errors.DomainError,
        which: Callable[[Subscriber[Item]], bool],
    ) -> None:
        """End the channel's subscribers that `which` picks, with `error`."""
        for subscriber in self.subscribers(channel_id):
            if which(subscriber):
                subscriber.close(error)
                self.unsubscribe(subscriber)

    def close_user(self, user_id: int, error: errors.DomainError) -> None:
        for channel_id in list(self._feeds):
            self.close_where(channel_id, error, lambda s: s.user_id == user_id)

    def close_channel(self, channel_id: int, error: errors.DomainError) -> None:
        self.close_where(channel_id, error, lambda s: True)

    def close_all(self, error: errors.DomainError) -> None:
        for channel_id in list(self._feeds):
            self.close_channel(channel_id, error)
