"""Member rows and the channel's member_count, changed together, with the
event that tells the streams (`MemberAdded`, `MemberRemoved`).

Callers hold the channel's row lock (channels.get_active_channel(lock=True))
before calling these, so the count is exact under concurrency.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import Channel, ChannelMember, User
from atomchat_server.domain import errors, events


async def _count(session: AsyncSession, channel_id: int, delta: int) -> None:
    await session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(member_count=Channel.member_count + delta)
    )


async def joinable_user(session: AsyncSession, *, user_id: int) -> User:
    """The user about to become a member: NOT_FOUND if unknown or blocked."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise errors.user_not_found()
    return user


async def insert_member(
    session: AsyncSession, *, channel_id: int, user_id: int, is_owner: bool = False
) -> ChannelMember | None:
    """The new member row, or None if the user was a member already."""
    # A new member has read everything there is.
    read_up_to = select(Channel.last_seq).where(Channel.id == channel_id).scalar_subquery()
    row = await session.scalar(
        insert(ChannelMember)
        .values(channel_id=channel_id, user_id=user_id, is_owner=is_owner, last_read_seq=read_up_to)
        .on_conflict_do_nothing(index_elements=[ChannelMember.channel_id, ChannelMember.user_id])
        .returning(ChannelMember)
    )
    if row is not None:
        await _count(session, channel_id, +1)
        await events.emit(session, events.MemberAdded(channel_id, user_id))
    return row


async def delete_member(session: AsyncSession, *, channel_id: int, user_id: int) -> bool:
    """True if the user was a member and no longer is."""
    removed = await session.scalar(
        delete(ChannelMember)
        .where(ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id)
        .returning(ChannelMember.id)
    )
    if removed is not None:
        await _count(session, channel_id, -1)
        await events.emit(session, events.MemberRemoved(channel_id, user_id))
    return removed is not None
