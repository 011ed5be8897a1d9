"""The hub alone: order, holding early messages, one read per gap, bounded buffers,
fan-out rounds and heartbeat sweeps on a clock the tests move by hand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from atomchat_server.domain import errors
from atomchat_server.domain.entities import MessageView
from atomchat_server.realtime.hub import (
    GROUP_SIZE,
    ROUND_SECONDS_PER_SUBSCRIBER,
    Hub,
    Subscriber,
)
from tests.clock import ManualClock

CHANNEL = 7


def message(seq: int) -> MessageView:
    return MessageView(
        id=seq,
        channel_id=CHANNEL,
        seq=seq,
        sender_id=1,
        sender_username="someone",
        content=f"message {seq}",
        created_at=datetime.now(UTC),
        client_message_id=None,
    )


@dataclass(frozen=True)
class Item:
    seq: int


class Store:
    """Stands in for the database: every message up to `last` is stored."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.reads: list[tuple[int, int]] = []

    async def fetch(self, channel_id: int, first: int, last: int) -> Sequence[MessageView]:
        assert channel_id == CHANNEL
        self.reads.append((first, last))
        return [message(seq) for seq in range(first, min(last, self.last) + 1)]


HEARTBEAT_SECONDS = 60.0


def make_hub(
    store: Store,
    *,
    buffer_limit: int = 100,
    clock: ManualClock | None = None,
    round_cost: float = 0.0,
    group_size: int = GROUP_SIZE,
) -> Hub[Item]:
    """A hub on a clock of its own; fan-out rounds cost no time unless a test says so."""
    return Hub(
        lambda m: Item(m.seq),
        store.fetch,
        buffer_limit=buffer_limit,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        clock=clock or ManualClock(),
        round_seconds_per_subscriber=round_cost,
        group_size=group_size,
    )


def taken(subscriber: Subscriber[Item]) -> list[int]:
    return [item.seq for item in subscriber.take(1000)]


async def receive(subscriber: Subscriber[Item], count: int) -> list[int]:
    """Wait for `count` more messages, the way a stream's writer does."""
    got: list[int] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            await subscriber.wait()
            got.extend(taken(subscriber))
    return got


async def test_messages_are_handed_out_once_in_seq_order() -> None:
    hub = make_hub(Store(last=3))
    first = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    second = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1), message(2)])
    hub.publish(CHANNEL, [message(2), message(3)])
    assert await receive(first, 3) == [1, 2, 3]
    assert await receive(second, 3) == [1, 2, 3]


async def test_an_early_message_waits_for_the_missing_one_read_once_for_all() -> None:
    store = Store(last=4)
    hub = make_hub(store)
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=True) for n in range(50)]
    hub.publish(CHANNEL, [message(1)])
    hub.publish(CHANNEL, [message(4)])
    for subscriber in subscribers:
        assert await receive(subscriber, 1) == [1]
    for subscriber in subscribers:
        assert await receive(subscriber, 3) == [2, 3, 4]
    assert store.reads == [(2, 3)]
    await hub.close()


async def test_the_missing_message_arriving_by_itself_releases_the_held_ones() -> None:
    store = Store(last=0)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1)])
    hub.publish(CHANNEL, [message(3)])
    hub.publish(CHANNEL, [message(2)])
    assert await receive(subscriber, 3) == [1, 2, 3]
    await hub.close()


async def test_advance_reads_what_the_channel_has_not_seen() -> None:
    store = Store(last=6)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1)])
    assert taken(subscriber) == [1]
    hub.advance_to(CHANNEL, 6)
    assert await receive(subscriber, 5) == [2, 3, 4, 5, 6]
    await hub.close()


async def test_a_full_buffer_closes_only_that_subscriber() -> None:
    hub = make_hub(Store(last=0), buffer_limit=3)
    slow = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    fast = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    for seq in range(1, 6):
        hub.publish(CHANNEL, [message(seq)])
        assert await receive(fast, 1) == [seq]
    assert isinstance(slow.ends_with, errors.ResourceExhausted)
    assert hub.subscribers(CHANNEL) == [fast]


async def test_closing_the_chosen_subscribers_of_a_channel_by_user_and_by_channel() -> None:
    hub = make_hub(Store(last=0))
    alice_here = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    alice_there = hub.subscribe(CHANNEL + 1, 1, is_moderator=False, batches=True)
    moderator = hub.subscribe(CHANNEL, 3, is_moderator=True, batches=True)
    bob = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    hub.close_where(CHANNEL, errors.not_a_member(), lambda s: not s.is_moderator and s.user_id == 3)
    assert moderator.ends_with is None
    hub.close_where(CHANNEL, errors.not_a_member(), lambda s: s.is_moderator)
    assert isinstance(moderator.ends_with, errors.PermissionDenied)
    hub.close_user(1, errors.invalid_credentials())
    assert isinstance(alice_here.ends_with, errors.Unauthenticated)
    assert isinstance(alice_there.ends_with, errors.Unauthenticated)
    assert bob.ends_with is None
    hub.close_channel(CHANNEL, errors.channel_not_found())
    assert isinstance(bob.ends_with, errors.NotFound)
    assert hub.channels() == {}


async def test_a_message_known_only_by_its_seq_is_read_even_before_any_other() -> None:
    store = Store(last=9)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.advance_to(CHANNEL, 9, first_seq=9)
    assert await receive(subscriber, 1) == [9]
    await hub.close()


async def test_what_becomes_known_while_reading_is_read_too() -> None:
    store = Store(last=5)
    gate = asyncio.Event()
    fetch = store.fetch

    async def slow_fetch(channel_id: int, first: int, last: int) -> Sequence[MessageView]:
        await gate.wait()
        return await fetch(channel_id, first, last)

    store.fetch = slow_fetch  # type: ignore[method-assign]
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1)])
    hub.advance_to(CHANNEL, 3)
    await asyncio.sleep(0)
    hub.advance_to(CHANNEL, 5)
    gate.set()
    assert await receive(subscriber, 5) == [1, 2, 3, 4, 5]
    await hub.close()


async def test_messages_arriving_between_rounds_share_the_next_round() -> None:
    clock = ManualClock()
    hub = make_hub(
        Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER, group_size=100
    )
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=True) for n in range(100)]
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in subscribers), "a quiet channel's round goes out at once"
    hub.publish(CHANNEL, [message(2)])
    hub.publish(CHANNEL, [message(3)])
    assert all(taken(s) == [] for s in subscribers), "the next round waits its turn"
    round_time = 100 * ROUND_SECONDS_PER_SUBSCRIBER
    clock.advance(round_time / 2)
    assert all(taken(s) == [] for s in subscribers), "half a round later it still waits"
    clock.advance(round_time / 2)
    assert all(taken(s) == [2, 3] for s in subscribers), "then both go out in one round"


async def test_busy_channels_share_the_fan_out_time() -> None:
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER)
    here = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=True) for n in range(100)]
    there = [hub.subscribe(CHANNEL + 1, n, is_moderator=False, batches=True) for n in range(100)]
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in here)
    hub.publish(CHANNEL + 1, [message(1)])
    assert all(taken(s) == [] for s in there), "another channel's round waits its turn too"
    clock.advance(100 * ROUND_SECONDS_PER_SUBSCRIBER)
    assert all(taken(s) == [1] for s in there)


async def test_a_quiet_loop_sends_a_round_at_once_whatever_came_before() -> None:
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1)])
    clock.advance(ROUND_SECONDS_PER_SUBSCRIBER)
    hub.publish(CHANNEL, [message(2)])
    assert taken(subscriber) == [1, 2]


async def test_heartbeats_go_to_subscribers_that_sent_nothing_for_a_whole_sweep() -> None:
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock)
    hub.start()
    quiet = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    busy = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    clock.advance(HEARTBEAT_SECONDS)
    # The first sweep only marks both: each may have sent just before it.
    assert not quiet.heartbeat_due
    assert not busy.heartbeat_due
    busy.active = True  # what a stream's writer does whenever it sends
    clock.advance(HEARTBEAT_SECONDS)
    assert quiet.heartbeat_due
    assert not busy.heartbeat_due
    await hub.close()
    clock.advance(10 * HEARTBEAT_SECONDS)
    assert not busy.heartbeat_due, "a closed hub sweeps no more"


async def test_advance_on_a_channel_that_handed_out_nothing_yet_hands_out_the_last_one() -> None:
    """Catching up (a listener reconnect, a commit whose answer was lost) on a channel
    whose streams have had no live message yet: they get the last one, and each
    stream reads what it lacks before it from the database."""
    store = Store(last=4)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    hub.advance_to(CHANNEL, 0)
    assert taken(subscriber) == []
    hub.advance_to(CHANNEL, 4)
    assert await receive(subscriber, 1) == [4]
    assert store.reads == [(4, 4)]
    await hub.close()


async def test_a_channel_whose_streams_take_a_frame_per_copy_goes_out_at_once() -> None:
    """Their copies cost one write each whatever the wait: a round waits for nothing."""
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER)
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=False) for n in range(100)]
    for seq in (1, 2, 3):
        hub.publish(CHANNEL, [message(seq)])
        assert all(taken(s) == [seq] for s in subscribers)


async def test_only_streams_that_batch_reserve_fan_out_time() -> None:
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER)
    single = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=False) for n in range(100)]
    batching = [hub.subscribe(CHANNEL + 1, n, is_moderator=False, batches=True) for n in range(100)]
    hub.publish(CHANNEL, [message(1)])
    hub.publish(CHANNEL + 1, [message(1)])
    assert all(taken(s) == [1] for s in single + batching), "nothing was reserved before"
    hub.publish(CHANNEL + 1, [message(2)])
    assert all(taken(s) == [] for s in batching), "the batching channel's next round waits"
    hub.publish(CHANNEL, [message(2)])
    assert all(taken(s) == [2] for s in single), "the other does not"
    clock.advance(100 * ROUND_SECONDS_PER_SUBSCRIBER)
    assert all(taken(s) == [2] for s in batching)


async def test_streams_that_take_a_frame_per_copy_get_it_at_once_beside_streams_that_batch() -> (
    None
):
    clock = ManualClock()
    hub = make_hub(Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER)
    single = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=False)
    batching = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    hub.publish(CHANNEL, [message(1)])
    hub.publish(CHANNEL, [message(2)])
    assert taken(single) == [1, 2]
    assert taken(batching) == [1], "the stream that batches waits for its next round"
    clock.advance(ROUND_SECONDS_PER_SUBSCRIBER)
    assert taken(batching) == [2]
    hub.unsubscribe(batching)
    hub.unsubscribe(batching)
    hub.publish(CHANNEL, [message(3)])
    assert taken(single) == [3]


async def test_a_busy_channels_groups_take_turns_and_a_quiet_ones_go_at_once() -> None:
    clock = ManualClock()
    hub = make_hub(
        Store(last=0), clock=clock, round_cost=ROUND_SECONDS_PER_SUBSCRIBER, group_size=2
    )
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=True) for n in range(6)]
    groups = [subscribers[0:2], subscribers[2:4], subscribers[4:6]]
    assert all(len({s.group for s in group}) == 1 for group in groups)
    assert len({s.group for s in subscribers}) == 3
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in subscribers), "a quiet channel's groups all go at once"
    hub.publish(CHANNEL, [message(2)])
    hub.publish(CHANNEL, [message(3)])
    turn = 2 * ROUND_SECONDS_PER_SUBSCRIBER
    for group in groups:
        assert all(taken(s) == [] for s in group), "each group waits for its share"
        clock.advance(turn)
        assert all(taken(s) == [2, 3] for s in group), "then goes, alone"
    clock.advance(10 * turn)
    hub.publish(CHANNEL, [message(4)])
    assert all(taken(s) == [4] for s in subscribers), "quiet again"


async def test_groups_are_filled_evenly_and_an_emptied_one_is_dropped() -> None:
    hub = make_hub(Store(last=0), group_size=2)
    first = [hub.subscribe(CHANNEL, n, is_moderator=False, batches=True) for n in range(5)]
    sizes = sorted(len(g.subscribers) for g in {s.group for s in first if s.group is not None})
    assert sizes == [1, 2, 2]
    alone = next(s for s in first if s.group is not None and len(s.group.subscribers) == 1)
    group = alone.group
    hub.unsubscribe(alone)
    assert alone.group is None
    assert group not in {s.group for s in first}
    assert len({s.group for s in first if s is not alone}) == 2
    hub.unsubscribe(first[0])
    later = hub.subscribe(CHANNEL, 9, is_moderator=False, batches=True)
    assert later.group is first[1].group, "a new one joins the group with room"
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in [*first[1:], later] if s is not alone)
    assert taken(alone) == []
    assert taken(first[0]) == []


async def test_an_idle_subscriber_is_waited_on_with_a_bare_future() -> None:
    """No coroutine of the hub's stays alive while a stream idles: its writer awaits a future."""
    hub = make_hub(Store(last=0))
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=False)
    waiting = subscriber.wait()
    assert isinstance(waiting, asyncio.Future)
    hub.publish(CHANNEL, [message(1)])
    async with asyncio.timeout(5):
        await waiting
    assert taken(subscriber) == [1]
    subscriber.request_heartbeat()
    async with asyncio.timeout(5):
        await subscriber.wait()  # due already: at once


async def test_a_writer_cancelled_while_waiting_leaves_the_subscriber_usable() -> None:
    hub = make_hub(Store(last=0))
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=False)
    writer = asyncio.create_task(receive(subscriber, 1))
    await asyncio.sleep(0)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    hub.publish(CHANNEL, [message(1)])
    assert await receive(subscriber, 1) == [1]


async def test_a_group_dropped_by_its_own_round_does_not_cost_the_next_group_its_message() -> None:
    hub = make_hub(Store(last=0), buffer_limit=1, group_size=1)
    slow = hub.subscribe(CHANNEL, 1, is_moderator=False, batches=True)
    reader = hub.subscribe(CHANNEL, 2, is_moderator=False, batches=True)
    assert slow.group is not reader.group
    hub.publish(CHANNEL, [message(1)])
    assert taken(reader) == [1]
    hub.publish(CHANNEL, [message(2)])
    assert slow.ends_with is not None, "its buffer was full: ended, and its group dropped"
    assert taken(reader) == [2]
