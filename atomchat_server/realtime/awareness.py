"""Typing and presence on the channel streams of this process (SPEC §8).

Neither is stored nor given a seq: both are frames queued on the channel's
other streams (never the user's own), and events sent to the other
processes over the bus. Typing passes a gate: at most one notice per user
per channel every 2 s is forwarded here, whichever process it came from; a
notice lasts 6 s, and a message from the typist ends it (the gate opens
again at once, so typing right after posting shows). Presence is kept by
`Presence`; this module turns its changes into frames, in channels with at
most `notice_limit` users online: every change is a frame on every other
stream of the channel, so a crowd that comes online together would cost the
square of its size. In larger channels `joined.online_user_ids` and
`Member.online` still say who is online.

Plain chat pays nothing for either: a message costs one dictionary lookup
here, and only when someone in its channel typed lately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from atomchat_server.domain import events
from atomchat_server.domain.entities import MessageView, TimelineEntry
from atomchat_server.realtime.hub import Clock, Hub, LoopClock
from atomchat_server.realtime.presence import Presence, Send

TYPING_INTERVAL_SECONDS = 2.0
TYPING_LASTS_SECONDS = 6.0


@dataclass(frozen=True, slots=True)
class AwarenessFrames:
    # typing(user_id, username, expires_at)
    typing: Callable[[int, str, datetime], bytes]
    # presence(user_id, username, online)
    presence: Callable[[int, str, bool], bytes]


class TypingGate:
    """Lets through at most one typing notice per user per channel every interval."""

    def __init__(self, clock: Clock, interval: float = TYPING_INTERVAL_SECONDS) -> None:
        self._clock = clock
        self._interval = interval
        # channel -> user -> when their last notice was let through
        self._passed: dict[int, dict[int, float]] = {}
        self._pruned = 0.0

    def allow(self, channel_id: int, user_id: int) -> bool:
        now = self._clock.time()
        if now - self._pruned > self._interval:
            self._prune(now)
        users = self._passed.setdefault(channel_id, {})
        passed = users.get(user_id)
        if passed is not None and now - passed < self._interval:
            return False
        users[user_id] = now
        return True

    def clear(self, channel_id: int, entries: Iterable[TimelineEntry]) -> None:
        """The senders of these messages posted: their next notice goes through."""
        users = self._passed.get(channel_id)
        if users is None:
            return
        for entry in entries:
            if isinstance(entry, MessageView):
                users.pop(entry.sender_id, None)
        if not users:
            del self._passed[channel_id]

    def _prune(self, now: float) -> None:
        self._pruned = now
        for channel_id in list(self._passed):
            users = self._passed[channel_id]
            for user_id in [u for u, passed in users.items() if now - passed >= self._interval]:
                del users[user_id]
            if not users:
                del self._passed[channel_id]


class Awareness:
    def __init__(
        self,
        hub: Hub[Any],
        frames: AwarenessFrames,
        *,
        origin: str,
        send: Send,
        heartbeat_seconds: float,
        grace_seconds: float,
        notice_limit: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self._hub = hub
        self._notice_limit = notice_limit
        self._frames = frames
        self._send = send
        self._clock: Clock = clock or LoopClock()
        self._gate = TypingGate(self._clock)
        # Processes say they are alive three times per heartbeat interval; what
        # one said lapses after an interval of silence.
        self.presence = Presence(
            origin=origin,
            send=send,
            on_change=self._presence_changed,
            clock=self._clock,
            grace_seconds=grace_seconds,
            alive_seconds=heartbeat_seconds / 3,
            lapse_seconds=heartbeat_seconds,
        )

    def typing(self, channel_id: int, user_id: int, username: str) -> None:
        """The user, on a stream or call of this process, is typing in the channel."""
        if not self._gate.allow(channel_id, user_id):
            return
        expires_at = datetime.now(UTC) + timedelta(seconds=TYPING_LASTS_SECONDS)
        self._hub.notify(
            channel_id, self._frames.typing(user_id, username, expires_at), skip_user=user_id
        )
        expires_at_ms = int(expires_at.timestamp() * 1000)
        self._send(events.TypingStarted(channel_id, user_id, username, expires_at_ms))

    def receive(self, event: events.Event) -> None:
        """Another process's typing or presence event."""
        match event:
            case events.TypingStarted(channel_id, user_id, username, expires_at_ms):
                if self._gate.allow(channel_id, user_id):
                    expires_at = datetime.fromtimestamp(expires_at_ms / 1000, UTC)
                    frame = self._frames.typing(user_id, username, expires_at)
                    self._hub.notify(channel_id, frame, skip_user=user_id)
            case _:
                self.presence.receive(event)

    def posted(self, channel_id: int, entries: Iterable[TimelineEntry]) -> None:
        """New timeline entries: a message ends its sender's typing."""
        self._gate.clear(channel_id, entries)

    def _presence_changed(self, channel_id: int, user_id: int, username: str, online: bool) -> None:
        # Counting the user who comes or goes: a channel as large as the limit
        # hears of everyone.
        online_there = self.presence.online_count(channel_id) + (0 if online else 1)
        if 0 < self._notice_limit < online_there:
            return
        frame = self._frames.presence(user_id, username, online)
        self._hub.notify(channel_id, frame, skip_user=user_id)
