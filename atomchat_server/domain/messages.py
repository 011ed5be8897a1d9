"""Message rules and reads: validation, history, ranges by seq, newest-first pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.engine import Database
from atomchat_server.db.models import Channel, Message, User
from atomchat_server.domain import errors, pagination, text
from atomchat_server.domain.channels import open_for_reading
from atomchat_server.domain.entities import Actor, ChannelView, MessageView, Page

CONTENT_MAX = 4000
CLIENT_MESSAGE_ID_MAX = 128
DEFAULT_HISTORY = 10
MAX_HISTORY = 1000
CATCH_UP_PAGE = 500


def clean_content(content: str) -> str:
    """The content as stored: trimmed, 1-4000 characters of which some can be seen,
    no NUL (PostgreSQL text has none)."""
    cleaned = content.strip()
    if not 1 <= len(cleaned) <= CONTENT_MAX:
        raise errors.InvalidArgument(
            f"Message content must be 1-{CONTENT_MAX} characters after trimming",
            reason=errors.Reason.INVALID_CONTENT,
            field="content",
        )
    if not text.has_visible(cleaned):
        raise errors.InvalidArgument(
            "Message content must contain something visible",
            reason=errors.Reason.INVALID_CONTENT,
            field="content",
        )
    if "\x00" in cleaned:
        raise errors.InvalidArgument(
            "Message content must not contain NUL characters",
            reason=errors.Reason.INVALID_CONTENT,
            field="content",
        )
    return cleaned


def clean_client_message_id(client_message_id: str) -> str | None:
    if len(client_message_id) > CLIENT_MESSAGE_ID_MAX or "\x00" in client_message_id:
        raise errors.InvalidArgument(
            f"client_message_id must be at most {CLIENT_MESSAGE_ID_MAX} characters, without NUL",
            reason=errors.Reason.INVALID_CLIENT_MESSAGE_ID,
            field="client_message_id",
        )
    return client_message_id or None


async def open_stream(
    session: AsyncSession, *, actor: Actor, channel_id: int
) -> tuple[ChannelView, int]:
    """The channel a stream joins, if the caller may read it, and its last seq now."""
    channel = await open_for_reading(session, actor=actor, channel_id=channel_id)
    last_seq = await session.scalar(select(Channel.last_seq).where(Channel.id == channel_id))
    return channel, int(last_seq or 0)


def start_after(*, last_seq: int, after_seq: int | None, history_limit: int | None) -> int:
    """The seq a stream starts after: the client's resume point, or history's start.

    Seqs are gap-free, so the last `limit` messages are exactly those after
    last_seq - limit.
    """
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
        return after_seq
    limit = DEFAULT_HISTORY if history_limit is None else history_limit
    if not 0 <= limit <= MAX_HISTORY:
        raise errors.InvalidArgument(
            f"history_limit must be 0-{MAX_HISTORY}", field="history_limit"
        )
    return max(0, last_seq - limit)


def _select() -> Select[Message, str]:
    return select(Message, User.username).join(User, User.id == Message.sender_id)


def _view(row: Row[Message, str]) -> MessageView:
    message, username = row
    return MessageView(
        id=message.id,
        channel_id=message.channel_id,
        seq=message.seq,
        sender_id=message.sender_id,
        sender_username=username,
        content=message.content,
        created_at=message.created_at,
        client_message_id=message.client_message_id,
    )


def _views(rows: Sequence[Row[Message, str]]) -> list[MessageView]:
    return [_view(row) for row in rows]


async def between(
    session: AsyncSession,
    *,
    channel_id: int,
    first_seq: int,
    last_seq: int,
    limit: int = CATCH_UP_PAGE,
) -> list[MessageView]:
    """Up to `limit` of the messages first_seq..last_seq inclusive, in seq order."""
    rows = (
        await session.execute(
            _select()
            .where(Message.channel_id == channel_id, Message.seq.between(first_seq, last_seq))
            .order_by(Message.seq)
            .limit(limit)
        )
    ).all()
    return _views(rows)


def range_reader(database: Database) -> Callable[[int, int, int], Awaitable[list[MessageView]]]:
    """between(), each call in a transaction of its own: how the hub reads what it missed."""

    async def read(channel_id: int, first_seq: int, last_seq: int) -> list[MessageView]:
        async with database.transaction() as session:
            return await between(
                session, channel_id=channel_id, first_seq=first_seq, last_seq=last_seq
            )

    return read


async def list_messages(
    session: AsyncSession, *, actor: Actor, channel_id: int, page_size: int, page_token: str
) -> Page[MessageView]:
    """Newest first."""
    await open_for_reading(session, actor=actor, channel_id=channel_id)
    cursor = pagination.Cursor.read(f"messages:{channel_id}", page_size, page_token)
    query = _select().where(Message.channel_id == channel_id)
    if cursor.position is not None:
        query = query.where(Message.seq < cursor.position)
    rows = (await session.execute(query.order_by(Message.seq.desc()).limit(cursor.fetch))).all()
    return cursor.page(rows, _view, lambda row: row[0].seq)
