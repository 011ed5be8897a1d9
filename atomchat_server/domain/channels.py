"""Channels: creating, finding, listing, changing and deleting them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from slugify import slugify
from sqlalchemy import Row, Select, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import Channel, ChannelMember, User
from atomchat_server.domain import (
    channel_rows,
    errors,
    events,
    inbox,
    membership,
    pagination,
    policy,
    text,
    timeline_store,
)
from atomchat_server.domain.entities import (
    Actor,
    ChannelDetailView,
    ChannelView,
    MemberView,
    Page,
)
from atomchat_server.domain.kinds import MembershipChange
from atomchat_server.domain.users import user_view

NAME_MAX = 100
DESCRIPTION_MAX = 1000
UPDATABLE_FIELDS = ("name", "description")

_owner = ChannelMember.__table__.alias("owner")


def _channel_columns() -> Select[Channel, int]:
    return select(Channel, func.coalesce(_owner.c.user_id, 0)).outerjoin(
        _owner, and_(_owner.c.channel_id == Channel.id, _owner.c.is_owner)
    )


def _view(row: Row[Channel, int]) -> ChannelView:
    channel, owner_id = row
    return ChannelView(
        id=channel.id,
        name=channel.name,
        slug=channel.slug,
        description=channel.description,
        is_active=channel.is_active,
        member_count=channel.member_count,
        owner_id=owner_id,
        created_at=channel.created_at,
        last_seq=channel.last_seq,
    )


async def get_active_channel(
    session: AsyncSession, *, channel_id: int, lock: bool = False
) -> ChannelView:
    """The channel, or NOT_FOUND when it does not exist or was deleted.

    With lock=True the channel's row stays locked until the transaction ends:
    every change of membership takes this lock first, which serialises them
    per channel (member_count stays exact) and orders locks so that
    concurrent changes cannot deadlock.
    """
    query = _channel_columns().where(Channel.id == channel_id, Channel.is_active)
    if lock:
        query = query.with_for_update(of=Channel)
    row = (await session.execute(query)).first()
    if row is None:
        raise errors.channel_not_found()
    return _view(row)


async def standing(session: AsyncSession, *, channel_id: int, user_id: int) -> policy.Standing:
    is_owner = await session.scalar(
        select(ChannelMember.is_owner).where(
            ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id
        )
    )
    if is_owner is None:
        return policy.OUTSIDER
    return policy.Standing(is_member=True, is_owner=is_owner)


async def open_for_reading(session: AsyncSession, *, actor: Actor, channel_id: int) -> ChannelView:
    """The channel, if the caller may read it (members and moderators)."""
    channel = await get_active_channel(session, channel_id=channel_id)
    policy.ensure_can_read_channel(
        actor, await standing(session, channel_id=channel_id, user_id=actor.user_id)
    )
    return channel


async def open_for_managing(
    session: AsyncSession, *, actor: Actor, channel_id: int, lock: bool = False
) -> ChannelView:
    """The channel, if the caller may manage it (owner and moderators)."""
    channel = await get_active_channel(session, channel_id=channel_id, lock=lock)
    policy.ensure_can_manage_channel(
        actor, await standing(session, channel_id=channel_id, user_id=actor.user_id)
    )
    return channel


def make_slug(name: str) -> str:
    slug = slugify(name, max_length=120)
    if not slug:
        raise errors.InvalidArgument(
            "Channel name must contain letters or digits",
            reason=errors.Reason.INVALID_NAME,
            field="name",
        )
    return slug


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if text.has_control_or_format(cleaned):
        raise errors.InvalidArgument(
            "Channel name must not contain control characters",
            reason=errors.Reason.INVALID_NAME,
            field="name",
        )
    if not 1 <= len(cleaned) <= NAME_MAX:
        raise errors.InvalidArgument(
            f"Channel name must be 1-{NAME_MAX} characters",
            reason=errors.Reason.INVALID_NAME,
            field="name",
        )
    return cleaned


def _clean_description(description: str) -> str:
    if "\x00" in description:
        # PostgreSQL text cannot hold NUL; line breaks and tabs are welcome.
        raise errors.InvalidArgument(
            "Description must not contain NUL characters",
            reason=errors.Reason.INVALID_DESCRIPTION,
            field="description",
        )
    if len(description) > DESCRIPTION_MAX:
        raise errors.InvalidArgument(
            f"Description must be at most {DESCRIPTION_MAX} characters",
            reason=errors.Reason.INVALID_DESCRIPTION,
            field="description",
        )
    return description.strip()


def _name_taken() -> errors.AlreadyExists:
    return errors.AlreadyExists(
        "Channel with this name already exists", reason=errors.Reason.CHANNEL_NAME_TAKEN
    )


async def _ensure_name_free(
    session: AsyncSession, *, name: str, slug: str, except_id: int | None = None
) -> None:
    clash = select(Channel.id).where(
        Channel.is_active, (Channel.name == name) | (Channel.slug == slug)
    )
    if except_id is not None:
        clash = clash.where(Channel.id != except_id)
    if await session.scalar(clash.limit(1)) is not None:
        raise _name_taken()


async def create_channel(
    session: AsyncSession, *, actor: Actor, name: str, description: str
) -> ChannelView:
    name = _clean_name(name)
    description = _clean_description(description)
    slug = make_slug(name)
    await _ensure_name_free(session, name=name, slug=slug)
    try:
        async with session.begin_nested():
            channel = await session.scalar(
                insert(Channel)
                .values(name=name, slug=slug, description=description)
                .returning(Channel)
            )
    except IntegrityError as exc:
        raise _name_taken() from exc
    if channel is None:
        raise RuntimeError("INSERT … RETURNING returned no channel")
    await membership.insert_member(
        session, channel_id=channel.id, user_id=actor.user_id, is_owner=True
    )
    return await get_active_channel(session, channel_id=channel.id)


async def _page(
    session: AsyncSession, query: Select[Channel, int], *, kind: str, size: int, token: str
) -> Page[ChannelView]:
    cursor = pagination.Cursor.read(kind, size, token)
    if cursor.position is not None:
        query = query.where(Channel.id > cursor.position)
    rows = (await session.execute(query.order_by(Channel.id).limit(cursor.fetch))).all()
    return cursor.page(rows, _view, lambda row: row[0].id)


async def list_channels(
    session: AsyncSession, *, page_size: int, page_token: str
) -> Page[ChannelView]:
    query = _channel_columns().where(Channel.is_active)
    return await _page(session, query, kind="channels", size=page_size, token=page_token)


async def get_channel_detail(
    session: AsyncSession, *, actor: Actor, slug: str
) -> ChannelDetailView:
    """The channel and its owner for anyone; its members only for those who take part."""
    if "\x00" in slug:  # no slug has one, and PostgreSQL text cannot hold it
        raise errors.channel_not_found()
    row = (
        await session.execute(_channel_columns().where(Channel.slug == slug, Channel.is_active))
    ).first()
    if row is None:
        raise errors.channel_not_found()
    channel = _view(row)
    caller = await standing(session, channel_id=channel.id, user_id=actor.user_id)
    if caller.is_member:
        connection = await timeline_store.raw_connection(session)
        channel = replace(
            channel,
            read_state=await channel_rows.read_state(
                connection, user_id=actor.user_id, channel_id=channel.id
            ),
        )
    owner = await session.get_one(User, channel.owner_id)
    members: tuple[MemberView, ...] = ()
    if policy.can_take_part(is_member=caller.is_member, is_moderator=actor.is_moderator):
        member_rows = (
            await session.execute(
                select(ChannelMember, User.username)
                .join(User, User.id == ChannelMember.user_id)
                .where(ChannelMember.channel_id == channel.id)
                .order_by(ChannelMember.is_owner.desc(), ChannelMember.joined_at, ChannelMember.id)
            )
        ).all()
        members = tuple(member_view(member, username) for member, username in member_rows)
    return ChannelDetailView(channel=channel, owner=user_view(owner), members=members)


def member_view(member: ChannelMember, username: str) -> MemberView:
    return MemberView(
        user_id=member.user_id,
        username=username,
        is_owner=member.is_owner,
        joined_at=member.joined_at,
    )


async def update_channel(
    session: AsyncSession,
    *,
    actor: Actor,
    channel_id: int,
    name: str | None,
    description: str | None,
    update_mask: Sequence[str],
) -> ChannelView:
    """Change the fields named by update_mask, or every field given when it is empty."""
    unknown = sorted(set(update_mask) - set(UPDATABLE_FIELDS))
    if unknown:
        raise errors.InvalidArgument(
            f"Cannot update {', '.join(unknown)}; updatable: name, description",
            reason=errors.Reason.INVALID_UPDATE_MASK,
            field="update_mask",
        )
    paths = set(update_mask) or {
        field
        for field, value in (("name", name), ("description", description))
        if value is not None
    }
    if not paths:
        raise errors.InvalidArgument(
            "Nothing to update: give name or description", reason=errors.Reason.EMPTY_UPDATE
        )
    channel = await open_for_managing(session, actor=actor, channel_id=channel_id)
    values: dict[str, str] = {}
    new_name = _clean_name(name or "") if "name" in paths else channel.name
    if new_name != channel.name:
        # Only a new name re-slugs: a channel keeps its slug (and its links)
        # when it is given the name it has.
        values["name"] = new_name
        values["slug"] = make_slug(new_name)
        await _ensure_name_free(
            session, name=values["name"], slug=values["slug"], except_id=channel.id
        )
    if "description" in paths:
        values["description"] = _clean_description(description or "")
    if not values:
        return channel
    try:
        async with session.begin_nested():
            await session.execute(update(Channel).where(Channel.id == channel.id).values(values))
    except IntegrityError as exc:
        raise _name_taken() from exc
    return await get_active_channel(session, channel_id=channel.id)


async def delete_channel(session: AsyncSession, *, actor: Actor, channel_id: int) -> None:
    """Soft delete: the channel disappears from every list and its streams end."""
    channel = await open_for_managing(session, actor=actor, channel_id=channel_id, lock=True)
    await session.execute(update(Channel).where(Channel.id == channel.id).values(is_active=False))
    members = await session.scalars(
        select(ChannelMember.user_id).where(ChannelMember.channel_id == channel.id)
    )
    await inbox.record_in(
        session, inbox.membership(list(members), channel.id, MembershipChange.CHANNEL_DELETED)
    )
    await events.emit(session, events.ChannelDeleted(channel.id))
