"""Where each event goes in this process: the hub's streams and the auth cache.

Events arrive twice over: this process's own, right after their commit, and
other processes', through the bus. After the bus reconnects, `catch_up`
re-reads from the database what notifications may have been missed: new
messages by seq, deleted channels, and subscribers who lost their access.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import select

from atomchat_server.db.engine import Database
from atomchat_server.db.models import Channel, ChannelMember, User
from atomchat_server.domain import errors, events
from atomchat_server.realtime.hub import Hub

log = logging.getLogger(__name__)


def user_blocked_error() -> errors.Unauthenticated:
    return errors.Unauthenticated("User is blocked", reason=errors.Reason.USER_BLOCKED)


class EventRouter:
    def __init__(
        self, hub: Hub[Any], database: Database, *, forget_user: Callable[[int], None]
    ) -> None:
        self._hub = hub
        self._database = database
        self._forget_user = forget_user

    def after_commit(self, items: Sequence[object]) -> None:
        """The database's on_commit hook: this process's own events."""
        for item in items:
            self.dispatch(cast(events.Event, item))

    def dispatch(self, event: events.Event) -> None:
        hub = self._hub
        match event:
            case events.MessagesPosted(channel_id, posted):
                hub.publish(channel_id, posted)
            case events.MessagesCommitted(channel_id, first_seq, last_seq):
                hub.advance_to(channel_id, last_seq, first_seq=first_seq)
            case events.UserBlocked(user_id):
                self._forget_user(user_id)
                hub.close_user(user_id, user_blocked_error())
            case events.UserUnblocked(user_id):
                self._forget_user(user_id)
            case events.MemberRemoved(channel_id, user_id):
                hub.close_member(channel_id, user_id, errors.not_a_member(), spare_moderators=True)
            case events.ChannelDeleted(channel_id):
                hub.close_channel(channel_id, errors.channel_not_found())

    async def catch_up(self) -> None:
        """Recover what the bus may have missed while it was disconnected."""
        watched = self._hub.channels()
        if not watched:
            return
        users = {s.user_id for c in watched for s in self._hub.subscribers(c)}
        async with self._database.transaction() as session:
            last_seqs = dict(
                (
                    await session.execute(
                        select(Channel.id, Channel.last_seq).where(
                            Channel.id.in_(watched), Channel.is_active
                        )
                    )
                ).all()
            )
            allowed = set(
                (
                    await session.execute(
                        select(ChannelMember.channel_id, ChannelMember.user_id).where(
                            ChannelMember.channel_id.in_(watched)
                        )
                    )
                ).all()
            )
            active_users = set(
                (
                    await session.scalars(select(User.id).where(User.id.in_(users), User.is_active))
                ).all()
            )
        for user_id in users:
            self._forget_user(user_id)
            if user_id not in active_users:
                self._hub.close_user(user_id, user_blocked_error())
        for channel_id in watched:
            if channel_id not in last_seqs:
                self._hub.close_channel(channel_id, errors.channel_not_found())
                continue
            for subscriber in self._hub.subscribers(channel_id):
                if (channel_id, subscriber.user_id) not in allowed:
                    self._hub.close_member(
                        channel_id, subscriber.user_id, errors.not_a_member(), spare_moderators=True
                    )
            self._hub.advance_to(channel_id, last_seqs[channel_id])
