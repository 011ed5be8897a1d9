"""The inbox streams of this process (SPEC §9): what each one still owes its reader.

An inbox stream owes two things. Stored events: the hub only learns the
user's latest event id (`stored`), and the stream reads the events it has not
sent from the database, in id order. Activity: for each of the user's
channels the stream keeps the channel's last seq and the user's read state,
counts every new message as it passes (a message by someone else is unread;
one that mentions the user is a mention too), and marks the channel as owing
an `activity` event. Whatever the stream cannot count exactly from what
passes (a gap in seqs, an edit or deletion of an unread message, a marker
moved, a channel just joined) marks the channel for a recount, which the
stream reads from the database; entries that pass meanwhile are held and
counted on top of it. What a stream owes is a set of channels, however many
messages arrive: a slow reader gets the latest state once, never a backlog.

Time comes from a `Clock`, as in the channel hub: one sweep per heartbeat
interval wakes every stream that sent nothing since the previous one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from atomchat_server.domain import errors
from atomchat_server.domain.entities import ActivityView, MessageView, ReadStateView, TimelineEntry
from atomchat_server.domain.kinds import UpdateKind
from atomchat_server.realtime.hub import Clock, LoopClock, Timer

# Entries held for a channel while its recount runs; past this the recount is
# simply run again.
HELD_LIMIT = 1000
_RECOUNTED_BY = (UpdateKind.EDITED, UpdateKind.DELETED)


@dataclass(slots=True)
class _Count:
    last_seq: int
    last_read_seq: int
    unread: int
    mentions: int

    @classmethod
    def of(cls, activity: ActivityView) -> _Count:
        state = activity.read_state
        return cls(activity.last_seq, state.last_read_seq, state.unread_count, state.mention_count)

    def view(self, channel_id: int) -> ActivityView:
        return ActivityView(
            channel_id=channel_id,
            last_seq=self.last_seq,
            read_state=ReadStateView(
                channel_id=channel_id,
                last_read_seq=self.last_read_seq,
                unread_count=self.unread,
                mention_count=self.mentions,
            ),
        )


class InboxSubscriber:
    __slots__ = (
        "_waiter",
        "active",
        "counts",
        "early",
        "ends_with",
        "heartbeat_due",
        "held",
        "owed",
        "recount",
        "reload",
        "stored_to",
        "user_id",
    )

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.ends_with: Exception | None = None
        # The user's channels, once loaded.
        self.counts: dict[int, _Count] = {}
        # While they are loaded: the channels that moved meanwhile (True: the
        # user's membership of it changed).
        self.early: dict[int, bool] = {}
        # Channels owing an activity event, in the order they came to owe it.
        self.owed: dict[int, None] = {}
        # Channels to read again, and the entries that passed while they were read.
        self.recount: set[int] = set()
        self.held: dict[int, list[TimelineEntry]] = {}
        # Everything must be read again (the bus reconnected).
        self.reload = False
        # The user's latest stored event, as far as this process knows.
        self.stored_to = 0
        self.active = True
        self.heartbeat_due = False
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, sent_id: int) -> None:
        """Until there is something to do for a stream that has sent events up to `sent_id`."""
        while not (
            self.ends_with
            or self.reload
            or self.recount
            or self.owed
            or self.heartbeat_due
            or self.stored_to > sent_id
        ):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def request_heartbeat(self) -> None:
        self.heartbeat_due = True
        self._wake()

    def close(self, error: Exception) -> None:
        if self.ends_with is None:
            self.ends_with = error
            self._wake()

    def take_owed(self) -> list[ActivityView]:
        owed = [self.counts[c].view(c) for c in self.owed if c in self.counts]
        self.owed.clear()
        return owed

    def take_recount(self) -> list[int]:
        """The channels to read again; entries keep being held until `recounted`."""
        channels = sorted(self.recount)
        self.recount.clear()
        return channels

    def _owe(self, channel_id: int) -> None:
        self.owed[channel_id] = None
        self._wake()

    def _recount(self, channel_id: int) -> None:
        self.recount.add(channel_id)
        self.held.setdefault(channel_id, [])
        self._wake()

    def _pass(self, channel_id: int, entries: Iterable[TimelineEntry]) -> None:
        count = self.counts.get(channel_id)
        if count is None:
            return
        held = self.held.get(channel_id)
        if held is not None:
            held.extend(entries)
            if len(held) > HELD_LIMIT:
                held.clear()
                self.recount.add(channel_id)
            return
        if self._count(channel_id, count, entries):
            self._owe(channel_id)

    def _count(self, channel_id: int, count: _Count, entries: Iterable[TimelineEntry]) -> bool:
        """Count what passes; True if the channel moved on. A channel that cannot be
        counted from what passes is marked for a recount instead."""
        moved = False
        user_id = self.user_id
        for entry in entries:
            if entry.seq <= count.last_seq:
                continue
            if entry.seq != count.last_seq + 1:
                self._recount(channel_id)
                return False
            count.last_seq = entry.seq
            if isinstance(entry, MessageView):
                moved = True
                if entry.sender_id != user_id:
                    count.unread += 1
                    if user_id in entry.mention_user_ids:
                        count.mentions += 1
                continue
            message = entry.message
            if (
                entry.kind in _RECOUNTED_BY
                and message.sender_id != user_id
                and message.seq > count.last_read_seq
            ):
                self._recount(channel_id)
                return False
        return moved


class InboxHub:
    def __init__(self, *, heartbeat_seconds: float, clock: Clock | None = None) -> None:
        self._heartbeat_seconds = heartbeat_seconds
        self._clock: Clock = clock or LoopClock()
        self._by_user: dict[int, set[InboxSubscriber]] = {}
        self._by_channel: dict[int, set[InboxSubscriber]] = {}
        # Subscribers whose channels are being read: they note every channel that moves.
        self._loading: set[InboxSubscriber] = set()
        self._sweep_timer: Timer | None = None

    def start(self) -> None:
        self._schedule_sweep()

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None

    def _schedule_sweep(self) -> None:
        when = self._clock.time() + self._heartbeat_seconds
        self._sweep_timer = self._clock.call_at(when, self._sweep)

    def _sweep(self) -> None:
        for subscribers in self._by_user.values():
            for subscriber in subscribers:
                if not subscriber.active:
                    subscriber.request_heartbeat()
                subscriber.active = False
        self._schedule_sweep()

    # -- streams

    def subscribe(self, user_id: int) -> InboxSubscriber:
        """A new stream: it hears of everything from here on, and loads its channels next."""
        subscriber = InboxSubscriber(user_id)
        self._by_user.setdefault(user_id, set()).add(subscriber)
        self._loading.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: InboxSubscriber) -> None:
        self._loading.discard(subscriber)
        users = self._by_user.get(subscriber.user_id)
        if users is not None:
            users.discard(subscriber)
            if not users:
                del self._by_user[subscriber.user_id]
        for channel_id in subscriber.counts:
            self._unwatch(channel_id, subscriber)
        subscriber.counts.clear()

    def reloading(self, subscriber: InboxSubscriber) -> None:
        """The stream is about to read all its channels again: note what moves meanwhile."""
        subscriber.reload = False
        subscriber.early.clear()
        self._loading.add(subscriber)

    def loaded(
        self, subscriber: InboxSubscriber, channels: Mapping[int, ActivityView], last_id: int
    ) -> None:
        """The stream's channels as read (all of them), and its latest stored event id.
        Channels that moved while they were read are recounted; so are those whose
        membership changed meanwhile (a recount drops a channel no longer the user's)."""
        self._loading.discard(subscriber)
        for channel_id in subscriber.counts:
            self._unwatch(channel_id, subscriber)
        subscriber.counts = {channel_id: _Count.of(a) for channel_id, a in channels.items()}
        subscriber.held.clear()
        subscriber.recount.clear()
        subscriber.owed.clear()
        subscriber.stored_to = max(subscriber.stored_to, last_id)
        for channel_id, membership in subscriber.early.items():
            if membership and channel_id not in subscriber.counts:
                subscriber.counts[channel_id] = _Count(0, 0, 0, 0)
            if channel_id in subscriber.counts:
                subscriber._recount(channel_id)
        subscriber.early.clear()
        for channel_id in subscriber.counts:
            self._by_channel.setdefault(channel_id, set()).add(subscriber)

    def recounted(
        self,
        subscriber: InboxSubscriber,
        channel_ids: Iterable[int],
        found: Mapping[int, ActivityView],
    ) -> None:
        """The recount of these channels: each is owed to the reader, with what
        passed meanwhile counted on top; those no longer the user's are dropped."""
        for channel_id in channel_ids:
            if channel_id not in subscriber.counts:
                continue
            held = subscriber.held.pop(channel_id, [])
            activity = found.get(channel_id)
            if activity is None:
                self._drop(subscriber, channel_id)
                continue
            count = subscriber.counts[channel_id] = _Count.of(activity)
            if channel_id in subscriber.recount:
                # Asked for again meanwhile: hold on until that recount.
                subscriber.held[channel_id] = held
            else:
                subscriber._count(channel_id, count, held)
            subscriber._owe(channel_id)

    def _drop(self, subscriber: InboxSubscriber, channel_id: int) -> None:
        subscriber.counts.pop(channel_id, None)
        subscriber.owed.pop(channel_id, None)
        subscriber.recount.discard(channel_id)
        subscriber.held.pop(channel_id, None)
        self._unwatch(channel_id, subscriber)

    def _unwatch(self, channel_id: int, subscriber: InboxSubscriber) -> None:
        watchers = self._by_channel.get(channel_id)
        if watchers is not None:
            watchers.discard(subscriber)
            if not watchers:
                del self._by_channel[channel_id]

    def subscribers(self) -> list[InboxSubscriber]:
        return [s for subscribers in self._by_user.values() for s in subscribers]

    def users(self) -> set[int]:
        return set(self._by_user)

    # -- what happens

    def _note_early(self, channel_id: int, *, membership: bool, user_id: int | None = None) -> None:
        for subscriber in self._loading:
            if user_id is None or subscriber.user_id == user_id:
                subscriber.early[channel_id] = subscriber.early.get(channel_id, False) or membership

    def timeline(self, channel_id: int, entries: tuple[TimelineEntry, ...]) -> None:
        """New entries of a channel's timeline, in seq order."""
        if self._loading:
            self._note_early(channel_id, membership=False)
        watchers = self._by_channel.get(channel_id)
        if watchers is None:
            return
        for subscriber in watchers:
            subscriber._pass(channel_id, entries)

    def moved(self, channel_id: int) -> None:
        """The channel has entries this process has not seen: recount it."""
        if self._loading:
            self._note_early(channel_id, membership=False)
        for subscriber in self._by_channel.get(channel_id, ()):
            subscriber._recount(channel_id)

    def marker_moved(self, user_id: int, channel_id: int) -> None:
        if self._loading:
            self._note_early(channel_id, membership=False, user_id=user_id)
        for subscriber in self._by_user.get(user_id, ()):
            if channel_id in subscriber.counts:
                subscriber._recount(channel_id)

    def member_added(self, channel_id: int, user_id: int) -> None:
        for subscriber in self._by_user.get(user_id, ()):
            if subscriber in self._loading:
                subscriber.early[channel_id] = True
                continue
            if channel_id not in subscriber.counts:
                subscriber.counts[channel_id] = _Count(0, 0, 0, 0)
                self._by_channel.setdefault(channel_id, set()).add(subscriber)
            subscriber._recount(channel_id)

    def member_removed(self, channel_id: int, user_id: int) -> None:
        if self._loading:
            self._note_early(channel_id, membership=True, user_id=user_id)
        for subscriber in list(self._by_user.get(user_id, ())):
            self._drop(subscriber, channel_id)

    def channel_deleted(self, channel_id: int) -> None:
        if self._loading:
            self._note_early(channel_id, membership=True)
        for subscriber in list(self._by_channel.get(channel_id, ())):
            self._drop(subscriber, channel_id)

    def stored(self, user_id: int, last_id: int) -> None:
        """The user's inbox has stored events up to `last_id`."""
        for subscriber in self._by_user.get(user_id, ()):
            if last_id > subscriber.stored_to:
                subscriber.stored_to = last_id
                subscriber._wake()

    def close_user(self, user_id: int, error: errors.DomainError) -> None:
        for subscriber in list(self._by_user.get(user_id, ())):
            subscriber.close(error)

    def close_all(self, error: errors.DomainError) -> None:
        for subscriber in self.subscribers():
            subscriber.close(error)

    def reload_all(self) -> None:
        """The bus reconnected: every stream reads its channels and inbox again."""
        for subscriber in self.subscribers():
            subscriber.reload = True
            subscriber._wake()
