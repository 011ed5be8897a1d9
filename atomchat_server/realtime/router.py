"""Where each event goes in this process: the hub's streams and the auth cache.

Events arrive twice over: this process's own, right after their commit, and
other processes', through the bus. After the bus reconnects, `catch_up`
forgets every cached user (a block may have been missed) and re-reads from
the database what the hub's channels may have missed: new messages by seq,
deleted channels, and subscribers who lost their access.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from atomchat_server.db.engine import Database
from atomchat_server.domain import errors, events, policy, recovery
from atomchat_server.realtime.hub import Hub, Subscriber


class UserCache(Protocol):
    def forget(self, user_id: int) -> None: ...

    def forget_everyone(self) -> None: ...


class EventRouter:
    def __init__(self, hub: Hub[Any], database: Database, *, users: UserCache) -> None:
        self._hub = hub
        self._database = database
        self._users = users

    def after_commit(self, items: Sequence[object]) -> None:
        """The database's on_commit hook: this process's own events."""
        for item in items:
            self.dispatch(cast(events.Event, item))

    def dispatch(self, event: events.Event) -> None:
        hub = self._hub
        match event:
            case events.TimelineAppended(channel_id, entries):
                hub.publish(channel_id, entries)
            case events.TimelineCommitted(channel_id, first_seq, last_seq):
                hub.advance_to(channel_id, last_seq, first_seq=first_seq)
            case events.UserBlocked(user_id):
                self._users.forget(user_id)
                hub.close_user(user_id, errors.user_blocked())
            case events.UserUnblocked(user_id):
                self._users.forget(user_id)
            case events.MemberRemoved(channel_id, user_id):
                hub.close_where(
                    channel_id,
                    errors.not_a_member(),
                    lambda s: s.user_id == user_id and not _takes_part(s, is_member=False),
                )
            case events.ChannelDeleted(channel_id):
                hub.close_channel(channel_id, errors.channel_not_found())

    async def catch_up(self) -> None:
        """Recover what the bus may have missed while it was disconnected."""
        self._users.forget_everyone()
        watched = self._hub.channels()
        if not watched:
            return
        user_ids = {s.user_id for c in watched for s in self._hub.subscribers(c)}
        async with self._database.transaction() as session:
            state = await recovery.read_stream_state(
                session, channel_ids=list(watched), user_ids=user_ids
            )
        for user_id in user_ids - state.active_users:
            self._hub.close_user(user_id, errors.user_blocked())
        for channel_id in watched:
            if channel_id not in state.last_seqs:
                self._hub.close_channel(channel_id, errors.channel_not_found())
                continue
            self._hub.close_where(channel_id, errors.not_a_member(), _outsiders(channel_id, state))
            self._hub.advance_to(channel_id, state.last_seqs[channel_id])


def _takes_part(subscriber: Subscriber[Any], *, is_member: bool) -> bool:
    return policy.can_take_part(is_member=is_member, is_moderator=subscriber.is_moderator)


def _outsiders(channel_id: int, state: recovery.StreamState) -> Callable[[Subscriber[Any]], bool]:
    """The channel's subscribers who may no longer take part in it."""

    def outsider(subscriber: Subscriber[Any]) -> bool:
        is_member = (channel_id, subscriber.user_id) in state.members
        return not _takes_part(subscriber, is_member=is_member)

    return outsider
