"""Where each event goes in this process: the channel hub's streams, the
inbox streams, typing and presence, and the auth cache.

Events arrive twice over: this process's own, right after their commit, and
other processes', through the bus (typing and presence only that way). After
the bus reconnects, `catch_up` forgets every cached user (a block may have
been missed), resynchronises presence, has every inbox stream read its state
again, and re-reads from the database what the hub's channels may have
missed: new messages by seq, deleted channels, and subscribers who lost
their access.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from atomchat_server.db.engine import Database
from atomchat_server.domain import errors, events, policy, recovery
from atomchat_server.realtime.awareness import Awareness
from atomchat_server.realtime.hub import Hub, Subscriber
from atomchat_server.realtime.inbox_hub import InboxHub


class UserCache(Protocol):
    def forget(self, user_id: int) -> None: ...

    def forget_everyone(self) -> None: ...


class EventRouter:
    def __init__(
        self,
        hub: Hub[Any],
        inboxes: InboxHub,
        awareness: Awareness,
        database: Database,
        *,
        users: UserCache,
    ) -> None:
        self._hub = hub
        self._inboxes = inboxes
        self._awareness = awareness
        self._database = database
        self._users = users

    def after_commit(self, items: Sequence[object]) -> None:
        """The database's on_commit hook: this process's own events."""
        for item in items:
            self.dispatch(cast(events.Event, item))

    def dispatch(self, event: events.Event) -> None:
        hub = self._hub
        inboxes = self._inboxes
        match event:
            case events.TimelineAppended(channel_id, entries):
                hub.publish(channel_id, entries)
                inboxes.timeline(channel_id, entries)
                self._awareness.posted(channel_id, entries)
            case events.TimelineCommitted(channel_id, first_seq, last_seq):
                hub.advance_to(channel_id, last_seq, first_seq=first_seq)
                inboxes.moved(channel_id)
            case events.UserBlocked(user_id):
                self._users.forget(user_id)
                hub.close_user(user_id, errors.user_blocked())
                inboxes.close_user(user_id, errors.user_blocked())
            case events.UserUnblocked(user_id):
                self._users.forget(user_id)
            case events.MemberAdded(channel_id, user_id):
                inboxes.member_added(channel_id, user_id)
            case events.MemberRemoved(channel_id, user_id):
                hub.close_where(
                    channel_id,
                    errors.not_a_member(),
                    lambda s: s.user_id == user_id and not _takes_part(s, is_member=False),
                )
                inboxes.member_removed(channel_id, user_id)
            case events.ChannelDeleted(channel_id):
                hub.close_channel(channel_id, errors.channel_not_found())
                inboxes.channel_deleted(channel_id)
            case events.InboxAppended(user_id, last_id):
                inboxes.stored(user_id, last_id)
            case events.ReadMarkerMoved(user_id, channel_id):
                inboxes.marker_moved(user_id, channel_id)
            case _:
                self._awareness.receive(event)

    async def catch_up(self) -> None:
        """Recover what the bus may have missed while it was disconnected."""
        self._users.forget_everyone()
        self._awareness.presence.resync()
        self._inboxes.reload_all()
        watched = self._hub.channels()
        user_ids = {s.user_id for c in watched for s in self._hub.subscribers(c)}
        user_ids |= self._inboxes.users()
        if not user_ids:
            return
        async with self._database.transaction() as session:
            state = await recovery.read_stream_state(
                session, channel_ids=list(watched), user_ids=user_ids
            )
        for user_id in user_ids - state.active_users:
            self._hub.close_user(user_id, errors.user_blocked())
            self._inboxes.close_user(user_id, errors.user_blocked())
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
