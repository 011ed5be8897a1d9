"""The inbox hub alone: counting what passes, recounting what it cannot count,
and holding what passes during a recount, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

from atomchat_server.domain import errors
from atomchat_server.domain.entities import (
    ActivityView,
    MessageView,
    ReadStateView,
    TimelineEntry,
    UpdateView,
)
from atomchat_server.domain.kinds import UpdateKind
from atomchat_server.realtime.inbox_hub import InboxHub, InboxSubscriber
from tests.clock import ManualClock

ME, OTHER = 1, 2
CHANNEL = 10


def message(seq: int, *, sender: int = OTHER, mentions: tuple[int, ...] = ()) -> MessageView:
    return MessageView(
        id=100 + seq,
        channel_id=CHANNEL,
        seq=seq,
        sender_id=sender,
        sender_username="someone",
        content=f"message {seq}",
        created_at=datetime.now(UTC),
        client_message_id=None,
        mention_user_ids=mentions,
    )


def update(seq: int, target: MessageView, kind: UpdateKind) -> UpdateView:
    return UpdateView(seq=seq, kind=kind, message=target)


def activity(last_seq: int, last_read: int = 0, unread: int = 0, mentions: int = 0) -> ActivityView:
    return ActivityView(
        channel_id=CHANNEL,
        last_seq=last_seq,
        read_state=ReadStateView(
            channel_id=CHANNEL,
            last_read_seq=last_read,
            unread_count=unread,
            mention_count=mentions,
        ),
    )


def loaded(hub: InboxHub, start: ActivityView) -> InboxSubscriber:
    subscriber = hub.subscribe(ME)
    hub.loaded(subscriber, {CHANNEL: start}, 0)
    return subscriber


def owed(subscriber: InboxSubscriber) -> list[tuple[int, int, int]]:
    return [
        (a.last_seq, a.read_state.unread_count, a.read_state.mention_count)
        for a in subscriber.take_owed()
    ]


def passing(hub: InboxHub, *entries: TimelineEntry) -> None:
    hub.timeline(CHANNEL, tuple(entries))


def test_messages_that_pass_are_counted_without_the_database() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = loaded(hub, activity(5, last_read=5))
    passing(hub, message(6), message(7, mentions=(ME,)))
    passing(hub, message(8, sender=ME))
    passing(hub, message(7))  # a repeat (the bus and this process's own commit)
    assert owed(subscriber) == [(8, 2, 1)], "one event for the channel, whatever passed"
    assert subscriber.recount == set()


def test_a_gap_an_edit_or_deletion_of_an_unread_message_or_a_moved_marker_is_recounted() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = loaded(hub, activity(5, last_read=3, unread=2))
    passing(hub, message(7))
    assert subscriber.take_recount() == [CHANNEL], "seq 6 never passed"
    hub.recounted(subscriber, [CHANNEL], {CHANNEL: activity(7, last_read=3, unread=4)})
    assert owed(subscriber) == [(7, 4, 0)]
    old = message(2)
    passing(hub, update(8, old, UpdateKind.REACTIONS))
    passing(hub, update(9, old, UpdateKind.DELETED))
    assert subscriber.recount == set(), "a read message's deletion changes no count"
    passing(hub, update(10, message(4), UpdateKind.DELETED))
    assert subscriber.take_recount() == [CHANNEL]
    hub.recounted(subscriber, [CHANNEL], {CHANNEL: activity(10, last_read=3, unread=3)})
    hub.marker_moved(ME, CHANNEL)
    hub.marker_moved(OTHER, CHANNEL)
    assert subscriber.take_recount() == [CHANNEL]


def test_what_passes_during_a_recount_is_counted_on_top_of_it() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = loaded(hub, activity(5, last_read=5))
    hub.marker_moved(ME, CHANNEL)
    channels = subscriber.take_recount()
    # The recount reads the store as of seq 6; 6 and 7 pass while it runs.
    passing(hub, message(6), message(7, mentions=(ME,)))
    assert owed(subscriber) == []
    hub.recounted(subscriber, channels, {CHANNEL: activity(6, last_read=5, unread=1)})
    assert owed(subscriber) == [(7, 2, 1)]


def test_a_recount_asked_for_again_while_it_runs_holds_on_until_the_next_one() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = loaded(hub, activity(5, last_read=5))
    hub.marker_moved(ME, CHANNEL)
    first = subscriber.take_recount()
    hub.marker_moved(ME, CHANNEL)  # marked read again on another device meanwhile
    hub.recounted(subscriber, first, {CHANNEL: activity(5, last_read=5)})
    passing(hub, message(6))
    second = subscriber.take_recount()
    assert second == [CHANNEL]
    hub.recounted(subscriber, second, {CHANNEL: activity(5, last_read=5)})
    assert owed(subscriber) == [(6, 1, 0)]


def test_channels_that_move_while_a_stream_loads_are_recounted_and_joins_are_kept() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = hub.subscribe(ME)
    hub.timeline(CHANNEL, (message(6),))
    hub.member_added(CHANNEL + 1, ME)  # committed after the load read the memberships
    hub.timeline(CHANNEL + 2, (message(1),))  # not the user's channel
    hub.loaded(subscriber, {CHANNEL: activity(5, last_read=5)}, 3)
    assert subscriber.take_recount() == [CHANNEL, CHANNEL + 1]
    assert subscriber.stored_to == 3


def test_leaving_or_a_deleted_channel_stops_its_activity() -> None:
    hub = InboxHub(heartbeat_seconds=60, clock=ManualClock())
    subscriber = loaded(hub, activity(5, last_read=5))
    hub.member_removed(CHANNEL, ME)
    passing(hub, message(6))
    assert owed(subscriber) == []
    hub.member_added(CHANNEL, ME)
    assert subscriber.take_recount() == [CHANNEL]
    hub.recounted(subscriber, [CHANNEL], {CHANNEL: activity(6, last_read=6)})
    hub.channel_deleted(CHANNEL)
    assert owed(subscriber) == []
    assert subscriber.counts == {}


def test_blocking_ends_the_users_streams_and_heartbeats_wake_quiet_ones() -> None:
    clock = ManualClock()
    hub = InboxHub(heartbeat_seconds=10, clock=clock)
    hub.start()
    mine, theirs = loaded(hub, activity(1)), hub.subscribe(OTHER)
    clock.advance(10)
    assert not mine.heartbeat_due, "it counts as active until a sweep finds it quiet"
    clock.advance(10)
    assert mine.heartbeat_due
    assert theirs.heartbeat_due
    hub.close_user(ME, errors.user_blocked())
    assert isinstance(mine.ends_with, errors.Unauthenticated)
    assert theirs.ends_with is None
