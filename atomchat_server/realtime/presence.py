"""Who is online in which channel, across server processes (SPEC §8).

A user is online in a channel while they hold at least one live stream of it
on any server process. Each process counts its own streams per (channel,
user) and tells the others over the bus when a count leaves or returns to
zero; it keeps what the others said, by process. `on_change` hears of every
user who comes online or goes offline in a channel, as this process sees
the union.

- A last stream that closes leaves its user online for a grace period
  (5 s): a reconnect within it, here or on another process, changes nothing.
- Every process says it is alive three times per heartbeat interval; what a
  process said lapses when it has been silent for an interval (it was
  killed), and right after the grace period when it says it is stopping.
- A process that starts, or whose bus reconnected, asks the others for a
  snapshot of what they hold and sends its own; one that hears from a
  process it does not know asks that process for its snapshot.

Nothing is stored: presence lives in the processes' memory only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from atomchat_server.domain import events
from atomchat_server.realtime.hub import Clock, LoopClock, Timer

# A snapshot part stays well inside PostgreSQL's notification payload limit.
_SNAPSHOT_PART_BYTES = 6000

OnChange = Callable[[int, int, str, bool], None]
Send = Callable[[events.Event], None]


@dataclass(slots=True)
class _Local:
    count: int
    username: str
    # The end of the grace period, once the last stream has closed.
    leaving: Timer | None = None


class Presence:
    def __init__(
        self,
        *,
        origin: str,
        send: Send,
        on_change: OnChange,
        grace_seconds: float,
        alive_seconds: float,
        lapse_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        self._origin = origin
        self._send = send
        self._notify = on_change
        self._clock: Clock = clock or LoopClock()
        self._grace = grace_seconds
        self._alive = alive_seconds
        self._lapse = lapse_seconds
        # channel -> user -> this process's streams
        self._local: dict[int, dict[int, _Local]] = {}
        # channel -> user -> {origin: username}
        self._remote: dict[int, dict[int, dict[str, str]]] = {}
        # origin -> when it was last heard from
        self._heard: dict[str, float] = {}
        # origin -> the parts of a snapshot still arriving
        self._parts: dict[str, list[list[object]]] = {}
        # channel -> how many users are online there
        self._online: dict[int, int] = {}
        self._timer: Timer | None = None

    def start(self) -> None:
        """Ask the others what they hold, then say we are alive, periodically."""
        self.resync()
        self._schedule()

    def stop(self) -> None:
        """Say this process is stopping; the others let its users go after the grace period."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for users in self._local.values():
            for entry in users.values():
                if entry.leaving is not None:
                    entry.leaving.cancel()
        self._send(events.PresenceGone(self._origin))

    def resync(self) -> None:
        """After the bus (re)connects: tell everything, and ask for everything."""
        self._send_snapshot()
        self._send(events.PresenceWanted(self._origin, ""))

    # -- this process's streams

    def enter(self, channel_id: int, user_id: int, username: str) -> None:
        """A stream of the user's in the channel went live here."""
        users = self._local.setdefault(channel_id, {})
        entry = users.get(user_id)
        if entry is not None:
            entry.count += 1
            if entry.leaving is not None:
                entry.leaving.cancel()
                entry.leaving = None
            return
        was_online = self.is_online(channel_id, user_id)
        users[user_id] = _Local(1, username)
        self._send(events.PresenceChanged(self._origin, channel_id, user_id, username, True))
        if not was_online:
            self._on_change(channel_id, user_id, username, True)

    def leave(self, channel_id: int, user_id: int) -> None:
        """A stream that `enter` counted has ended."""
        entry = self._local.get(channel_id, {}).get(user_id)
        if entry is None or entry.count == 0:
            return
        entry.count -= 1
        if entry.count == 0:
            entry.leaving = self._clock.call_at(
                self._clock.time() + self._grace,
                functools.partial(self._left, channel_id, user_id),
            )

    def _left(self, channel_id: int, user_id: int) -> None:
        users = self._local.get(channel_id, {})
        entry = users.get(user_id)
        if entry is None or entry.count > 0:
            return
        del users[user_id]
        if not users:
            del self._local[channel_id]
        self._send(events.PresenceChanged(self._origin, channel_id, user_id, entry.username, False))
        if not self.is_online(channel_id, user_id):
            self._on_change(channel_id, user_id, entry.username, False)

    # -- what is known

    def is_online(self, channel_id: int, user_id: int) -> bool:
        return user_id in self._local.get(channel_id, ()) or user_id in self._remote.get(
            channel_id, ()
        )

    def online_users(self, channel_id: int) -> list[int]:
        return sorted({*self._local.get(channel_id, ()), *self._remote.get(channel_id, ())})

    def online_count(self, channel_id: int) -> int:
        return self._online.get(channel_id, 0)

    def _on_change(self, channel_id: int, user_id: int, username: str, online: bool) -> None:
        count = self._online.get(channel_id, 0) + (1 if online else -1)
        if count > 0:
            self._online[channel_id] = count
        else:
            self._online.pop(channel_id, None)
        self._notify(channel_id, user_id, username, online)

    # -- what the other processes say

    def receive(self, event: events.Event) -> None:
        match event:
            case events.PresenceChanged(origin, channel_id, user_id, username, online):
                self._hear(origin)
                self._set_remote(origin, channel_id, user_id, username, online=online)
            case events.PresenceAlive(origin):
                self._hear(origin)
            case events.PresenceWanted(origin, target):
                self._hear(origin)
                if target in ("", self._origin):
                    self._send_snapshot()
            case events.PresenceSnapshot(origin, entries, complete):
                self._heard[origin] = self._clock.time()
                parts = self._parts.setdefault(origin, [])
                parts.extend(entries)
                if complete:
                    self._replace(origin, self._parts.pop(origin))
            case events.PresenceGone(origin):
                # Lapses once the grace period is over, at the next alive tick.
                self._heard[origin] = self._clock.time() - self._lapse + self._grace

    def _hear(self, origin: str) -> None:
        known = origin in self._heard
        self._heard[origin] = self._clock.time()
        if not known:
            self._send(events.PresenceWanted(self._origin, origin))

    def _set_remote(
        self, origin: str, channel_id: int, user_id: int, username: str, *, online: bool
    ) -> None:
        was_online = self.is_online(channel_id, user_id)
        users = self._remote.setdefault(channel_id, {})
        origins = users.setdefault(user_id, {})
        if online:
            origins[origin] = username
        else:
            origins.pop(origin, None)
            if not origins:
                del users[user_id]
        if not users:
            del self._remote[channel_id]
        now_online = self.is_online(channel_id, user_id)
        if now_online != was_online:
            self._on_change(channel_id, user_id, username, now_online)

    def _held_by(self, origin: str) -> dict[tuple[int, int], str]:
        return {
            (channel_id, user_id): origins[origin]
            for channel_id, users in self._remote.items()
            for user_id, origins in users.items()
            if origin in origins
        }

    def _replace(self, origin: str, entries: list[list[object]]) -> None:
        held = self._held_by(origin)
        now: dict[tuple[int, int], str] = {}
        for channel_id, user_id, username in entries:
            now[(int(str(channel_id)), int(str(user_id)))] = str(username)
        for (channel_id, user_id), username in held.items():
            if (channel_id, user_id) not in now:
                self._set_remote(origin, channel_id, user_id, username, online=False)
        for (channel_id, user_id), username in now.items():
            if (channel_id, user_id) not in held:
                self._set_remote(origin, channel_id, user_id, username, online=True)

    # -- keeping alive

    def _schedule(self) -> None:
        self._timer = self._clock.call_at(self._clock.time() + self._alive, self._tick)

    def _tick(self) -> None:
        self._send(events.PresenceAlive(self._origin))
        deadline = self._clock.time() - self._lapse
        for origin in [o for o, heard in self._heard.items() if heard <= deadline]:
            del self._heard[origin]
            self._parts.pop(origin, None)
            self._replace(origin, [])
        self._schedule()

    def _send_snapshot(self) -> None:
        for entries, complete in self._snapshot_parts():
            self._send(events.PresenceSnapshot(self._origin, entries, complete))

    def _snapshot_parts(self) -> Iterator[tuple[list[list[object]], bool]]:
        part: list[list[object]] = []
        size = 0
        for channel_id, users in self._local.items():
            for user_id, entry in users.items():
                item: list[object] = [channel_id, user_id, entry.username]
                item_size = len(json.dumps(item, ensure_ascii=False).encode())
                if part and size + item_size > _SNAPSHOT_PART_BYTES:
                    yield part, False
                    part, size = [], 0
                part.append(item)
                size += item_size + 1
        yield part, True
