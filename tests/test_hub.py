"""The hub alone: order, holding early messages, one read per gap, bounded buffers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from atomchat_server.domain import errors
from atomchat_server.domain.entities import MessageView
from atomchat_server.realtime.hub import Hub, Subscriber

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


def make_hub(store: Store, *, buffer_limit: int = 100) -> Hub[Item]:
    return Hub(lambda m: Item(m.seq), store.fetch, buffer_limit=buffer_limit, heartbeat_seconds=60)


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
    first = hub.subscribe(CHANNEL, 1, is_moderator=False)
    second = hub.subscribe(CHANNEL, 2, is_moderator=False)
    hub.publish(CHANNEL, [message(1), message(2)])
    hub.publish(CHANNEL, [message(2), message(3)])
    assert await receive(first, 3) == [1, 2, 3]
    assert await receive(second, 3) == [1, 2, 3]


async def test_an_early_message_waits_for_the_missing_one_read_once_for_all() -> None:
    store = Store(last=4)
    hub = make_hub(store)
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False) for n in range(50)]
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
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False)
    hub.publish(CHANNEL, [message(1)])
    hub.publish(CHANNEL, [message(3)])
    hub.publish(CHANNEL, [message(2)])
    assert await receive(subscriber, 3) == [1, 2, 3]
    await hub.close()


async def test_advance_reads_what_the_channel_has_not_seen() -> None:
    store = Store(last=6)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False)
    hub.publish(CHANNEL, [message(1)])
    assert taken(subscriber) == [1]
    hub.advance_to(CHANNEL, 6)
    assert await receive(subscriber, 5) == [2, 3, 4, 5, 6]
    await hub.close()


async def test_a_full_buffer_closes_only_that_subscriber() -> None:
    hub = make_hub(Store(last=0), buffer_limit=3)
    slow = hub.subscribe(CHANNEL, 1, is_moderator=False)
    fast = hub.subscribe(CHANNEL, 2, is_moderator=False)
    for seq in range(1, 6):
        hub.publish(CHANNEL, [message(seq)])
        assert await receive(fast, 1) == [seq]
    assert isinstance(slow.closed, errors.ResourceExhausted)
    assert hub.subscribers(CHANNEL) == [fast]


async def test_closing_by_user_member_and_channel() -> None:
    hub = make_hub(Store(last=0))
    alice_here = hub.subscribe(CHANNEL, 1, is_moderator=False)
    alice_there = hub.subscribe(CHANNEL + 1, 1, is_moderator=False)
    moderator = hub.subscribe(CHANNEL, 3, is_moderator=True)
    bob = hub.subscribe(CHANNEL, 2, is_moderator=False)
    hub.close_member(CHANNEL, 3, errors.not_a_member(), spare_moderators=True)
    assert moderator.closed is None
    hub.close_user(1, errors.invalid_credentials())
    assert alice_here.closed is not None
    assert alice_there.closed is not None
    hub.close_channel(CHANNEL, errors.channel_not_found())
    assert isinstance(bob.closed, errors.NotFound)
    assert hub.channels() == {}


async def test_a_message_known_only_by_its_seq_is_read_even_before_any_other() -> None:
    store = Store(last=9)
    hub = make_hub(store)
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False)
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
    subscriber = hub.subscribe(CHANNEL, 1, is_moderator=False)
    hub.publish(CHANNEL, [message(1)])
    hub.advance_to(CHANNEL, 3)
    await asyncio.sleep(0)
    hub.advance_to(CHANNEL, 5)
    gate.set()
    assert await receive(subscriber, 5) == [1, 2, 3, 4, 5]
    await hub.close()


async def test_messages_arriving_between_rounds_share_the_next_round() -> None:
    hub = make_hub(Store(last=0))
    subscribers = [hub.subscribe(CHANNEL, n, is_moderator=False) for n in range(100)]
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in subscribers), "a quiet channel's round goes out at once"
    hub.publish(CHANNEL, [message(2)])
    hub.publish(CHANNEL, [message(3)])
    assert all(taken(s) == [] for s in subscribers), "the next round waits its turn"
    assert await receive(subscribers[0], 2) == [2, 3]
    assert all(taken(s) == [2, 3] for s in subscribers[1:])


async def test_busy_channels_share_the_fan_out_time() -> None:
    hub = make_hub(Store(last=0))
    here = [hub.subscribe(CHANNEL, n, is_moderator=False) for n in range(100)]
    there = [hub.subscribe(CHANNEL + 1, n, is_moderator=False) for n in range(100)]
    hub.publish(CHANNEL, [message(1)])
    assert all(taken(s) == [1] for s in here)
    hub.publish(CHANNEL + 1, [message(1)])
    assert all(taken(s) == [] for s in there), "another channel's round waits its turn too"
    assert await receive(there[0], 1) == [1]
    await hub.close()
