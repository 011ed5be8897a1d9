"""Asking to join a channel, and the owner's (or a moderator's) decision."""

from __future__ import annotations

from sqlalchemy import Select, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.models import Channel, ChannelJoinRequest, User
from atomchat_server.domain import errors, inbox, membership, pagination, policy
from atomchat_server.domain.channels import get_active_channel, open_for_managing, standing
from atomchat_server.domain.entities import Actor, JoinRequestView, Page
from atomchat_server.domain.kinds import InboxKind, JoinRequestStatus, MembershipChange

# The predicate of the partial unique index uq_channel_join_requests_pending,
# as SQL text: ON CONFLICT infers the index only from a literal predicate. A
# bound parameter ("status = $1") matches while PostgreSQL plans each call
# with its values and fails once it switches to a generic plan (the sixth
# call on a connection).
_PENDING_INDEX_WHERE = text("status = 'pending'")


def _view(row: ChannelJoinRequest, username: str) -> JoinRequestView:
    return JoinRequestView(
        id=row.id,
        channel_id=row.channel_id,
        user_id=row.user_id,
        status=JoinRequestStatus(row.status),
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        username=username,
    )


def _with_requester() -> Select[ChannelJoinRequest, str]:
    """Requests with their requester's username."""
    return select(ChannelJoinRequest, User.username).join(
        User, User.id == ChannelJoinRequest.user_id
    )


async def create_join_request(
    session: AsyncSession, *, actor: Actor, channel_id: int
) -> JoinRequestView:
    channel = await get_active_channel(session, channel_id=channel_id)
    if (await standing(session, channel_id=channel_id, user_id=actor.user_id)).is_member:
        raise errors.already_member()
    row = await session.scalar(
        insert(ChannelJoinRequest)
        .values(channel_id=channel_id, user_id=actor.user_id)
        .on_conflict_do_nothing(
            index_elements=[ChannelJoinRequest.channel_id, ChannelJoinRequest.user_id],
            index_where=_PENDING_INDEX_WHERE,
        )
        .returning(ChannelJoinRequest)
    )
    if row is None:
        raise errors.AlreadyExists(
            "Join request already exists", reason=errors.Reason.JOIN_REQUEST_PENDING
        )
    await inbox.record_in(
        session,
        [
            inbox.InboxRecord(
                user_id=channel.owner_id,
                kind=InboxKind.JOIN_REQUEST,
                channel_id=channel_id,
                join_request_id=row.id,
            )
        ],
    )
    return _view(row, actor.username)


async def _load(session: AsyncSession, request_id: int) -> JoinRequestView:
    found = (
        await session.execute(_with_requester().where(ChannelJoinRequest.id == request_id))
    ).first()
    if found is None:
        raise errors.join_request_not_found()
    return _view(found[0], found[1])


async def get_join_request(
    session: AsyncSession, *, actor: Actor, request_id: int
) -> JoinRequestView:
    request = await _load(session, request_id)
    caller = await standing(session, channel_id=request.channel_id, user_id=actor.user_id)
    if not policy.can_see_join_request(actor, request, caller):
        raise errors.join_request_not_found()
    await get_active_channel(session, channel_id=request.channel_id)
    return request


async def list_join_requests(
    session: AsyncSession,
    *,
    actor: Actor,
    channel_id: int,
    status: JoinRequestStatus,
    page_size: int,
    page_token: str,
) -> Page[JoinRequestView]:
    await open_for_managing(session, actor=actor, channel_id=channel_id)
    cursor = pagination.Cursor.read(f"join_requests:{channel_id}:{status}", page_size, page_token)
    query = _with_requester().where(
        ChannelJoinRequest.channel_id == channel_id, ChannelJoinRequest.status == status
    )
    return await _page(session, query, cursor)


async def list_my_join_requests(
    session: AsyncSession,
    *,
    actor: Actor,
    status: JoinRequestStatus,
    page_size: int,
    page_token: str,
) -> Page[JoinRequestView]:
    """The caller's own requests with one status, oldest first; those to deleted
    channels are gone, as they are for everyone."""
    cursor = pagination.Cursor.read(
        f"my_join_requests:{actor.user_id}:{status}", page_size, page_token
    )
    query = (
        _with_requester()
        .join(Channel, Channel.id == ChannelJoinRequest.channel_id)
        .where(
            ChannelJoinRequest.user_id == actor.user_id,
            ChannelJoinRequest.status == status,
            Channel.is_active,
        )
    )
    return await _page(session, query, cursor)


async def _page(
    session: AsyncSession,
    query: Select[ChannelJoinRequest, str],
    cursor: pagination.Cursor,
) -> Page[JoinRequestView]:
    if cursor.position is not None:
        query = query.where(ChannelJoinRequest.id > cursor.position)
    rows = (await session.execute(query.order_by(ChannelJoinRequest.id).limit(cursor.fetch))).all()
    return cursor.page(rows, lambda row: _view(row[0], row[1]), lambda row: row[0].id)


async def _decide(
    session: AsyncSession, *, actor: Actor, request_id: int, status: JoinRequestStatus
) -> JoinRequestView:
    request = await _load(session, request_id)
    await open_for_managing(session, actor=actor, channel_id=request.channel_id, lock=True)
    row = await session.scalar(
        update(ChannelJoinRequest)
        .where(
            ChannelJoinRequest.id == request_id,
            ChannelJoinRequest.status == JoinRequestStatus.PENDING,
        )
        .values(status=status, decided_at=func.now(), decided_by=actor.user_id)
        .returning(ChannelJoinRequest)
        .execution_options(populate_existing=True)
    )
    if row is None:
        current = await session.scalar(
            select(ChannelJoinRequest.status).where(ChannelJoinRequest.id == request_id)
        )
        raise errors.FailedPrecondition(
            f"Join request is already {current}", reason=errors.Reason.JOIN_REQUEST_NOT_PENDING
        )
    if status == JoinRequestStatus.ACCEPTED:
        # A user blocked since asking is not let in (as AddMember would not);
        # raising here rolls the decision back too.
        await membership.joinable_user(session, user_id=request.user_id)
        await membership.insert_member(
            session, channel_id=request.channel_id, user_id=request.user_id
        )
    decided = [_decided(request.user_id, request.channel_id, request_id)]
    if status == JoinRequestStatus.ACCEPTED:
        decided += inbox.membership([request.user_id], request.channel_id, MembershipChange.ADDED)
    await inbox.record_in(session, decided)
    return _view(row, request.username)


def _decided(user_id: int, channel_id: int, request_id: int) -> inbox.InboxRecord:
    return inbox.InboxRecord(
        user_id=user_id,
        kind=InboxKind.JOIN_REQUEST_DECIDED,
        channel_id=channel_id,
        join_request_id=request_id,
    )


async def accept_join_request(
    session: AsyncSession, *, actor: Actor, request_id: int
) -> JoinRequestView:
    """Accept a pending request; the requester becomes a member."""
    return await _decide(
        session, actor=actor, request_id=request_id, status=JoinRequestStatus.ACCEPTED
    )


async def decline_join_request(
    session: AsyncSession, *, actor: Actor, request_id: int
) -> JoinRequestView:
    """Reject a pending request; the user may ask again."""
    return await _decide(
        session, actor=actor, request_id=request_id, status=JoinRequestStatus.REJECTED
    )


async def settle_pending(
    session: AsyncSession, *, actor: Actor, channel_id: int, user_id: int
) -> list[inbox.InboxRecord]:
    """A user added directly no longer waits: their pending request counts as
    accepted. Returns the decision to tell them of, if there was one."""
    settled = await session.scalar(
        update(ChannelJoinRequest)
        .where(
            ChannelJoinRequest.channel_id == channel_id,
            ChannelJoinRequest.user_id == user_id,
            ChannelJoinRequest.status == JoinRequestStatus.PENDING,
        )
        .values(status=JoinRequestStatus.ACCEPTED, decided_at=func.now(), decided_by=actor.user_id)
        .returning(ChannelJoinRequest.id)
    )
    return [] if settled is None else [_decided(user_id, channel_id, settled)]
