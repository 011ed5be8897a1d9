"""Reading a channel's timeline: messages in their current state, and the
updates that took seqs between them.

The queries are asyncpg's, shared by the poster's batches (on its own
connection) and by calls and streams (on a session's connection, see
`raw_connection`), so that a message is read the same way everywhere. Each
function is named for what it reads, so a profile or a log line says which
query ran.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from atomchat_server.domain.entities import MessageView, ReactionView, TimelineEntry, UpdateView
from atomchat_server.domain.kinds import UpdateKind

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# A message's current state, reactions included (emoji, and who reacted in
# order, for each emoji in the order it was first used): `m` is messages,
# `u` its sender.
MESSAGE_COLUMNS = (
    "m.id, m.channel_id, m.seq, m.sender_id, u.username AS sender_username, m.content,"
    " m.created_at, m.client_message_id, m.edited_at, m.deleted_at, m.deleted_by,"
    " m.reply_to_id, m.mention_user_ids,"
    " (SELECT jsonb_agg(jsonb_build_array(g.emoji, g.users) ORDER BY g.first, g.emoji)"
    "  FROM (SELECT r.emoji, array_agg(r.user_id ORDER BY r.created_at, r.user_id) AS users,"
    "        min(r.created_at) AS first"
    "        FROM message_reactions r WHERE r.message_id = m.id GROUP BY r.emoji) g"
    " ) AS reactions"
)

# The queries below are made of constants only.
_BY_ID = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id"  # noqa: S608
    " WHERE m.id = ANY($1::bigint[])"
)
_RANGE = (
    "SELECT e.seq AS entry_seq, e.kind, " + MESSAGE_COLUMNS + " FROM ("  # noqa: S608
    "  SELECT seq, NULL::text AS kind, id AS message_id FROM messages"
    "  WHERE channel_id = $1 AND seq BETWEEN $2 AND $3"
    "  UNION ALL"
    "  SELECT seq, kind, message_id FROM message_updates"
    "  WHERE channel_id = $1 AND seq BETWEEN $2 AND $3"
    ") e JOIN messages m ON m.id = e.message_id JOIN users u ON u.id = m.sender_id"
    " ORDER BY e.seq LIMIT $4"
)
_NEWEST = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id"  # noqa: S608
    " WHERE m.channel_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
)


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session's transaction."""
    connection = await session.connection()
    fairy = await connection.get_raw_connection()
    driver = fairy.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        raise TypeError(f"the session's driver connection is {type(driver).__name__}")
    return driver


def message_view(row: asyncpg.Record) -> MessageView:
    # jsonb: text on a plain asyncpg connection, decoded already on SQLAlchemy's.
    raw = row["reactions"]
    reactions: list[list[Any]] = (json.loads(raw) if isinstance(raw, str) else raw) or []
    return MessageView(
        id=row["id"],
        channel_id=row["channel_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        sender_username=row["sender_username"],
        content=row["content"],
        created_at=row["created_at"],
        client_message_id=row["client_message_id"],
        edited_at=row["edited_at"],
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
        reply_to_id=row["reply_to_id"],
        mention_user_ids=tuple(row["mention_user_ids"]),
        reactions=tuple(ReactionView(emoji, tuple(users)) for emoji, users in reactions),
    )


def _entry(row: asyncpg.Record) -> TimelineEntry:
    message = message_view(row)
    if row["kind"] is None:
        return message
    return UpdateView(seq=row["entry_seq"], kind=UpdateKind(row["kind"]), message=message)


async def messages_by_id(
    connection: asyncpg.Connection, message_ids: Sequence[int]
) -> dict[int, MessageView]:
    """The messages with these ids, in their current state."""
    rows = await connection.fetch(_BY_ID, list(message_ids))
    return {row["id"]: message_view(row) for row in rows}


async def timeline_range(
    connection: asyncpg.Connection, *, channel_id: int, first_seq: int, last_seq: int, limit: int
) -> list[TimelineEntry]:
    """Up to `limit` entries with seqs first_seq..last_seq, in seq order."""
    rows = await connection.fetch(_RANGE, channel_id, first_seq, last_seq, limit)
    return [_entry(row) for row in rows]


async def newest_messages(
    connection: asyncpg.Connection, *, channel_id: int, before_seq: int, limit: int
) -> list[MessageView]:
    """Up to `limit` messages posted before `before_seq`, newest first."""
    rows = await connection.fetch(_NEWEST, channel_id, before_seq, limit)
    return [message_view(row) for row in rows]
