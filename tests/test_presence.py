"""Presence and the typing gate alone, on a clock the tests move by hand: two or
three processes wired to each other as the bus would, without a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from atomchat_server.domain import events
from atomchat_server.domain.entities import MessageView
from atomchat_server.realtime.awareness import TypingGate
from atomchat_server.realtime.presence import Presence
from tests.clock import ManualClock

GRACE, ALIVE, LAPSE = 5.0, 5.0, 15.0
CHANNEL = 3


@dataclass
class Process:
    """One server process's presence, with what its streams were told."""

    origin: str
    clock: ManualClock
    network: Network
    changes: list[tuple[int, int, bool]] = field(default_factory=list)
    presence: Presence = field(init=False)

    def __post_init__(self) -> None:
        self.presence = Presence(
            origin=self.origin,
            send=self.network.send_from(self.origin),
            on_change=lambda c, u, _name, online: self.changes.append((c, u, online)),
            clock=self.clock,
            grace_seconds=GRACE,
            alive_seconds=ALIVE,
            lapse_seconds=LAPSE,
        )


@dataclass
class Network:
    """The bus: every event reaches every other connected process, in order."""

    processes: dict[str, Process] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)

    def send_from(self, origin: str):  # type: ignore[no-untyped-def]
        def send(event: events.Event) -> None:
            if origin in self.down:
                return
            for name, process in list(self.processes.items()):
                if name != origin and name not in self.down:
                    process.presence.receive(event)

        return send

    def start(self, origin: str, clock: ManualClock) -> Process:
        process = Process(origin, clock, self)
        self.processes[origin] = process
        process.presence.start()
        return process


def online(process: Process, user_id: int) -> bool:
    return process.presence.is_online(CHANNEL, user_id)


def test_a_first_stream_brings_its_user_online_everywhere_and_the_last_one_takes_them_off() -> None:
    clock = ManualClock()
    network = Network()
    here, there = network.start("here", clock), network.start("there", clock)
    here.presence.enter(CHANNEL, 42, "ann")
    here.presence.enter(CHANNEL, 42, "ann")
    assert here.changes == there.changes == [(CHANNEL, 42, True)]
    assert there.presence.online_users(CHANNEL) == [42]
    here.presence.leave(CHANNEL, 42)
    clock.advance(GRACE + 1)
    assert online(there, 42), "one stream is still open"
    here.presence.leave(CHANNEL, 42)
    clock.advance(GRACE - 1)
    assert online(there, 42), "still within the grace period"
    clock.advance(1.5)
    assert not online(here, 42)
    assert not online(there, 42)
    assert there.changes == [(CHANNEL, 42, True), (CHANNEL, 42, False)]


def test_a_reconnect_within_the_grace_period_does_not_flap_even_on_another_process() -> None:
    clock = ManualClock()
    network = Network()
    here, there, third = (network.start(name, clock) for name in ("here", "there", "third"))
    here.presence.enter(CHANNEL, 7, "bob")
    here.presence.leave(CHANNEL, 7)
    clock.advance(GRACE - 1)
    here.presence.enter(CHANNEL, 7, "bob")  # the same process
    clock.advance(GRACE * 3)
    here.presence.leave(CHANNEL, 7)
    clock.advance(2)
    there.presence.enter(CHANNEL, 7, "bob")  # another process
    clock.advance(GRACE * 3)
    for process in (here, there, third):
        assert process.changes == [(CHANNEL, 7, True)], process.origin
        assert online(process, 7)


def test_what_a_killed_process_said_lapses_and_a_stopping_one_lets_go_after_the_grace() -> None:
    clock = ManualClock()
    network = Network()
    here, killed, stopping = (network.start(n, clock) for n in ("here", "killed", "stopping"))
    killed.presence.enter(CHANNEL, 1, "one")
    stopping.presence.enter(CHANNEL, 2, "two")
    network.down.add("killed")
    stopping.presence.stop()
    network.down.add("stopping")
    clock.advance(GRACE + ALIVE)
    assert not online(here, 2)
    assert online(here, 1), "a silent process keeps its word until it lapses"
    clock.advance(LAPSE)
    assert not online(here, 1)
    assert here.changes[-2:] == [(CHANNEL, 2, False), (CHANNEL, 1, False)]


def test_a_process_that_starts_or_reconnects_learns_everything_and_is_relearnt() -> None:
    clock = ManualClock()
    network = Network()
    here = network.start("here", clock)
    for user in range(1, 400):  # several snapshot parts
        here.presence.enter(CHANNEL, user, f"user-{user}-{'я' * 20}")
    late = network.start("late", clock)
    assert late.presence.online_users(CHANNEL) == list(range(1, 400))
    # `late` misses notifications for longer than what `here` said lasts...
    network.down.add("late")
    here.presence.enter(CHANNEL, 500, "new")
    for user in range(1, 200):
        here.presence.leave(CHANNEL, user)
    clock.advance(LAPSE + ALIVE + GRACE)
    network.down.discard("late")
    # ... and comes back: its bus reconnects.
    late.presence.resync()
    assert late.presence.online_users(CHANNEL) == [*range(200, 400), 500]
    # `late` goes quiet again, long enough for `here` to let it lapse, with a
    # user online there; once `here` hears from it again, it asks for its snapshot.
    network.down.add("late")
    late.presence.enter(CHANNEL, 900, "late-user")
    clock.advance(LAPSE + ALIVE)
    assert not online(here, 900)
    network.down.discard("late")
    clock.advance(ALIVE)
    assert online(here, 900)


def test_the_typing_gate_lets_one_notice_through_every_two_seconds_and_a_message_reopens_it() -> (
    None
):
    clock = ManualClock()
    gate = TypingGate(clock)
    assert gate.allow(CHANNEL, 1)
    assert not gate.allow(CHANNEL, 1)
    assert gate.allow(CHANNEL, 2), "per user"
    assert gate.allow(CHANNEL + 1, 1), "per channel"
    clock.advance(1.9)
    assert not gate.allow(CHANNEL, 1)
    clock.advance(0.2)
    assert gate.allow(CHANNEL, 1)
    gate.clear(CHANNEL, [_message(sender_id=1)])
    assert gate.allow(CHANNEL, 1), "a message ends the typing: the next notice goes at once"


def _message(*, sender_id: int) -> MessageView:
    return MessageView(
        id=1,
        channel_id=CHANNEL,
        seq=1,
        sender_id=sender_id,
        sender_username="x",
        content="hi",
        created_at=datetime.now(UTC),
        client_message_id=None,
    )
