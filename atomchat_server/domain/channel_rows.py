"""Channels read through asyncpg: the columns every such query shares
(prefixed `c_`, the channel aliased `c`) and the view built from them; and
where a member stands in their channels (SPEC §8).

Read states are derived, never kept: unread = messages by others, not
deleted, after the member's marker; mentions = those of them that mention
the member. One statement reads the state of any number of channels: two
lateral counts per channel, each reading one index from the marker on (the
(channel_id, seq) index for unread messages, the partial index of messages
that mention someone for mentions).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from atomchat_server.domain.entities import ActivityView, ChannelView, ReadStateView

COLUMNS = (
    "c.id AS c_id, c.name AS c_name, c.slug AS c_slug, c.description AS c_description,"
    " c.is_active AS c_is_active, c.member_count AS c_member_count,"
    " c.created_at AS c_created_at, c.last_seq AS c_last_seq,"
    " coalesce((SELECT o.user_id FROM channel_members o"
    "  WHERE o.channel_id = c.id AND o.is_owner), 0) AS c_owner_id"
)


def channel_view(row: asyncpg.Record, read_state: ReadStateView | None = None) -> ChannelView:
    return ChannelView(
        id=row["c_id"],
        name=row["c_name"],
        slug=row["c_slug"],
        description=row["c_description"],
        is_active=row["c_is_active"],
        member_count=row["c_member_count"],
        owner_id=row["c_owner_id"],
        created_at=row["c_created_at"],
        last_seq=row["c_last_seq"],
        read_state=read_state,
    )


# `cm` is the member's row: the counts of the messages after its marker, each from
# an index only (unread from the (channel_id, seq) index, mentions from the index
# of the messages that mention someone).
_AFTER_MARKER = (
    "FROM messages m WHERE m.channel_id = cm.channel_id AND m.seq > cm.last_read_seq"
    " AND m.sender_id <> $1 AND m.deleted_at IS NULL"
)
_COUNTED = (
    f" CROSS JOIN LATERAL (SELECT count(*) AS unread {_AFTER_MARKER}) counted"
    f" CROSS JOIN LATERAL (SELECT count(*) AS mentions {_AFTER_MARKER}"
    "  AND m.mention_user_ids <> '{}' AND $1 = ANY(m.mention_user_ids)) mentioned"
)
_STATE_COLUMNS = "cm.channel_id, c.last_seq, cm.last_read_seq, counted.unread, mentioned.mentions"
_ACTIVITY = (
    f"SELECT {_STATE_COLUMNS} FROM channel_members cm"  # noqa: S608 - constants only
    f" JOIN channels c ON c.id = cm.channel_id{_COUNTED}"
    " WHERE cm.user_id = $1 AND cm.channel_id = ANY($2::bigint[]) AND c.is_active"
)
_ALL_ACTIVITY = (
    f"SELECT {_STATE_COLUMNS} FROM channel_members cm"  # noqa: S608
    f" JOIN channels c ON c.id = cm.channel_id{_COUNTED}"
    " WHERE cm.user_id = $1 AND c.is_active"
)
MY_CHANNELS = (
    f"SELECT {COLUMNS}, {_STATE_COLUMNS} FROM channel_members cm"  # noqa: S608
    f" JOIN channels c ON c.id = cm.channel_id{_COUNTED}"
    " WHERE cm.user_id = $1 AND c.is_active AND c.id > $2 ORDER BY c.id LIMIT $3"
)


def activity(row: asyncpg.Record) -> ActivityView:
    return ActivityView(
        channel_id=row["channel_id"],
        last_seq=row["last_seq"],
        read_state=ReadStateView(
            channel_id=row["channel_id"],
            last_read_seq=row["last_read_seq"],
            unread_count=row["unread"],
            mention_count=row["mentions"],
        ),
    )


async def channel_activity(
    connection: asyncpg.Connection, *, user_id: int, channel_ids: Sequence[int] | None = None
) -> dict[int, ActivityView]:
    """Where the member stands in these channels (every channel of theirs when None);
    channels they are not a member of, or that are deleted, are left out."""
    if channel_ids is None:
        rows = await connection.fetch(_ALL_ACTIVITY, user_id)
    else:
        rows = await connection.fetch(_ACTIVITY, user_id, list(channel_ids))
    return {row["channel_id"]: activity(row) for row in rows}


async def read_state(
    connection: asyncpg.Connection, *, user_id: int, channel_id: int
) -> ReadStateView | None:
    """The member's read state of the channel (None if they are not a member)."""
    found = await channel_activity(connection, user_id=user_id, channel_ids=[channel_id])
    return found[channel_id].read_state if channel_id in found else None


async def my_channels(
    connection: asyncpg.Connection, *, user_id: int, after_id: int, limit: int
) -> list[ChannelView]:
    """Up to `limit` of the member's channels after `after_id`, each with its read state."""
    rows = await connection.fetch(MY_CHANNELS, user_id, after_id, limit)
    return [channel_view(row, activity(row).read_state) for row in rows]
