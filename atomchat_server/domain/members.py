"""Adding, removing and listing a channel's members; leaving a channel."""

from __future__ import annotations

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import ChannelMember, User
from atomchat_server.domain import errors, inbox, membership, pagination, policy
from atomchat_server.domain.channels import (
    get_active_channel,
    member_view,
    open_for_managing,
    open_for_reading,
    standing,
)
from atomchat_server.domain.entities import Actor, MemberView, Page
from atomchat_server.domain.join_requests import settle_pending
from atomchat_server.domain.kinds import MembershipChange


async def add_member(
    session: AsyncSession, *, actor: Actor, channel_id: int, user_id: int
) -> MemberView:
    await open_for_managing(session, actor=actor, channel_id=channel_id, lock=True)
    user = await membership.joinable_user(session, user_id=user_id)
    row = await membership.insert_member(session, channel_id=channel_id, user_id=user_id)
    if row is None:
        raise errors.already_member()
    settled = await settle_pending(session, actor=actor, channel_id=channel_id, user_id=user_id)
    await inbox.record_in(
        session,
        [
            *settled,
            *inbox.membership([user_id], channel_id, MembershipChange.ADDED),
        ],
    )
    return member_view(row, user.username)


async def remove_member(
    session: AsyncSession, *, actor: Actor, channel_id: int, user_id: int
) -> None:
    """Remove a member (never the owner); their streams in the channel end."""
    await open_for_managing(session, actor=actor, channel_id=channel_id, lock=True)
    target = await standing(session, channel_id=channel_id, user_id=user_id)
    if not target.is_member:
        raise errors.NotFound(
            "User is not a member of this channel", reason=errors.Reason.MEMBER_NOT_FOUND
        )
    policy.ensure_can_be_removed(target)
    await membership.delete_member(session, channel_id=channel_id, user_id=user_id)
    await inbox.record_in(
        session, inbox.membership([user_id], channel_id, MembershipChange.REMOVED)
    )


async def leave_channel(session: AsyncSession, *, actor: Actor, channel_id: int) -> None:
    await get_active_channel(session, channel_id=channel_id, lock=True)
    policy.ensure_can_leave(await standing(session, channel_id=channel_id, user_id=actor.user_id))
    await membership.delete_member(session, channel_id=channel_id, user_id=actor.user_id)
    # Their other devices learn of it too.
    await inbox.record_in(
        session, inbox.membership([actor.user_id], channel_id, MembershipChange.REMOVED)
    )


async def list_members(
    session: AsyncSession, *, actor: Actor, channel_id: int, page_size: int, page_token: str
) -> Page[MemberView]:
    """Owner first, then in joining order."""
    await open_for_reading(session, actor=actor, channel_id=channel_id)
    cursor = pagination.Cursor.read(f"members:{channel_id}", page_size, page_token)
    query = (
        select(ChannelMember, User.username)
        .join(User, User.id == ChannelMember.user_id)
        .where(ChannelMember.channel_id == channel_id)
    )
    # Owner first: the owner sorts as position 0, everyone else by row id.
    position = case((ChannelMember.is_owner, 0), else_=ChannelMember.id)
    if cursor.position is not None:
        query = query.where(position > cursor.position)
    rows = (await session.execute(query.order_by(position).limit(cursor.fetch))).all()
    return cursor.page(
        rows,
        lambda row: member_view(row[0], row[1]),
        lambda row: 0 if row[0].is_owner else row[0].id,
    )
