"""What a process re-reads from the store when it may have missed notifications.

After the bus reconnects, every channel with live streams here must learn
what it missed: whether it still exists and its last seq, who is still a
member, and which of its stream holders are still active users.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import Channel, ChannelMember, User


@dataclass(frozen=True, slots=True)
class StreamState:
    """The store's answer for a set of channels and the users streaming them."""

    last_seqs: dict[int, int]
    """The channels still active, with their last seq."""
    members: frozenset[tuple[int, int]]
    """(channel id, user id) of every membership in those channels."""
    active_users: frozenset[int]
    """The users asked about who are not blocked."""


async def read_stream_state(
    session: AsyncSession, *, channel_ids: Collection[int], user_ids: Collection[int]
) -> StreamState:
    last_seqs = {
        row.id: row.last_seq
        for row in await session.execute(
            select(Channel.id, Channel.last_seq).where(
                Channel.id.in_(channel_ids), Channel.is_active
            )
        )
    }
    members = frozenset(
        (row.channel_id, row.user_id)
        for row in await session.execute(
            select(ChannelMember.channel_id, ChannelMember.user_id).where(
                ChannelMember.channel_id.in_(channel_ids)
            )
        )
    )
    active_users = frozenset(
        await session.scalars(select(User.id).where(User.id.in_(user_ids), User.is_active))
    )
    return StreamState(last_seqs=last_seqs, members=members, active_users=active_users)
