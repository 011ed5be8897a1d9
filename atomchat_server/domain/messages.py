"""Message rules and reads: validation, where a stream starts, history, the timeline
by seq, newest-first pages, one message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.engine import Database
from atomchat_server.db.models import Channel
from atomchat_server.domain import errors, pagination, timeline_store
from atomchat_server.domain.channels import open_for_reading
from atomchat_server.domain.entities import (
    Actor,
    ChannelView,
    MessageView,
    Page,
    TimelineEntry,
)

DEFAULT_HISTORY = 10
MAX_HISTORY = 1000
CATCH_UP_PAGE = 500


async def open_stream(
    session: AsyncSession, *, actor: Actor, channel_id: int
) -> tuple[ChannelView, int]:
    """The channel a stream joins, if the caller may read it, and its last seq now."""
    channel = await open_for_reading(session, actor=actor, channel_id=channel_id)
    last_seq = await session.scalar(select(Channel.last_seq).where(Channel.id == channel_id))
    return channel, int(last_seq or 0)


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Where a stream starts: `history` recent messages in their current state,
    then every timeline entry after `after_seq`."""

    after_seq: int
    history: int


def stream_start(*, last_seq: int, after_seq: int | None, history_limit: int | None) -> StreamStart:
    """The client's resume point, or the recent messages then live ones."""
    if after_seq is not None:
        if after_seq < 0:
            raise errors.InvalidArgument("after_seq must not be negative", field="after_seq")
        if after_seq > last_seq:
            # Nothing after it exists: a client resuming from the future would
            # otherwise wait silently for seqs that were never given.
            raise errors.OutOfRange(
                f"after_seq {after_seq} is beyond the channel's last seq {last_seq}",
                reason=errors.Reason.AFTER_SEQ_BEYOND_LAST,
                metadata={"last_seq": str(last_seq)},
            )
        return StreamStart(after_seq=after_seq, history=0)
    limit = DEFAULT_HISTORY if history_limit is None else history_limit
    if not 0 <= limit <= MAX_HISTORY:
        raise errors.InvalidArgument(
            f"history_limit must be 0-{MAX_HISTORY}", field="history_limit"
        )
    return StreamStart(after_seq=last_seq, history=limit)


async def recent_messages(
    session: AsyncSession, *, channel_id: int, up_to_seq: int, limit: int
) -> list[MessageView]:
    """The last `limit` messages posted up to `up_to_seq`, oldest first, as they are now."""
    if limit == 0:
        return []
    connection = await timeline_store.raw_connection(session)
    newest = await timeline_store.newest_messages(
        connection, channel_id=channel_id, before_seq=up_to_seq + 1, limit=limit
    )
    return newest[::-1]


async def timeline_between(
    session: AsyncSession,
    *,
    channel_id: int,
    first_seq: int,
    last_seq: int,
    limit: int = CATCH_UP_PAGE,
) -> list[TimelineEntry]:
    """Up to `limit` of the timeline entries first_seq..last_seq inclusive, in seq order."""
    connection = await timeline_store.raw_connection(session)
    return await timeline_store.timeline_range(
        connection, channel_id=channel_id, first_seq=first_seq, last_seq=last_seq, limit=limit
    )


def range_reader(database: Database) -> Callable[[int, int, int], Awaitable[list[TimelineEntry]]]:
    """timeline_between(), each call in a transaction of its own: how the hub reads what
    it missed."""

    async def read(channel_id: int, first_seq: int, last_seq: int) -> list[TimelineEntry]:
        async with database.transaction() as session:
            return await timeline_between(
                session, channel_id=channel_id, first_seq=first_seq, last_seq=last_seq
            )

    return read


async def list_messages(
    session: AsyncSession, *, actor: Actor, channel_id: int, page_size: int, page_token: str
) -> Page[MessageView]:
    """Newest first, in their current state."""
    await open_for_reading(session, actor=actor, channel_id=channel_id)
    cursor = pagination.Cursor.read(f"messages:{channel_id}", page_size, page_token)
    before = cursor.position if cursor.position is not None else pagination.MAX_POSITION
    connection = await timeline_store.raw_connection(session)
    rows = await timeline_store.newest_messages(
        connection, channel_id=channel_id, before_seq=before, limit=cursor.fetch
    )
    return cursor.page(rows, lambda message: message, lambda message: message.seq)


async def get_message(
    session: AsyncSession, *, actor: Actor, channel_id: int, message_id: int
) -> MessageView:
    await open_for_reading(session, actor=actor, channel_id=channel_id)
    connection = await timeline_store.raw_connection(session)
    found = (await timeline_store.messages_by_id(connection, [message_id])).get(message_id)
    if found is None or found.channel_id != channel_id:
        raise errors.message_not_found()
    return found
