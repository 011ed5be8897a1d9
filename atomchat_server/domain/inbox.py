"""A user's inbox (SPEC §9): stored events, recorded in the transaction of the
change that causes them, with per-user, gap-free ids; the last 1000 kept.

An event stores what it is about (a join request, a channel, a message) by
id; reading builds it from the current rows. Recording locks the users'
rows in id order (after any channel locks the caller holds: every
transaction takes channels first, users second), so ids never collide or
skip; after the commit, each user's inbox streams hear `InboxAppended`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from atomchat_server.domain import channel_rows, errors, events, timeline_store
from atomchat_server.domain.entities import ChannelView, JoinRequestView, MessageView
from atomchat_server.domain.kinds import InboxKind, JoinRequestStatus, MembershipChange

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

KEEP = 1000
DEFAULT_REPLAY = 50


@dataclass(frozen=True, slots=True)
class InboxRecord:
    user_id: int
    kind: InboxKind
    channel_id: int
    join_request_id: int | None = None
    message_id: int | None = None
    change: MembershipChange | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A stored event as it reads now."""

    id: int
    created_at: datetime
    kind: InboxKind
    channel: ChannelView
    join_request: JoinRequestView | None
    message: MessageView | None
    change: MembershipChange | None


def membership(
    user_ids: Sequence[int], channel_id: int, change: MembershipChange
) -> list[InboxRecord]:
    return [
        InboxRecord(
            user_id=user_id, kind=InboxKind.MEMBERSHIP, channel_id=channel_id, change=change
        )
        for user_id in user_ids
    ]


# NO KEY UPDATE: the lock the counter's update takes anyway, which leaves the
# rows free for the KEY SHARE locks of foreign keys (a message's sender).
_LOCK_USERS = "SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"
_RECORD = (
    "WITH events AS ("
    "  SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],"
    "   $6::text[]) WITH ORDINALITY AS e(user_id, kind, channel_id, join_request_id, message_id,"
    "   change, position)),"
    " counts AS (SELECT user_id, count(*) AS n FROM events GROUP BY user_id),"
    " bumped AS (UPDATE users SET inbox_last_id = users.inbox_last_id + counts.n FROM counts"
    "  WHERE users.id = counts.user_id RETURNING users.id, users.inbox_last_id, counts.n)"
    " INSERT INTO inbox_events (user_id, id, kind, channel_id, join_request_id, message_id, change)"
    " SELECT e.user_id,"
    "  b.inbox_last_id - b.n + row_number() OVER (PARTITION BY e.user_id ORDER BY e.position),"
    "  e.kind, e.channel_id, e.join_request_id, e.message_id, e.change"
    " FROM events e JOIN bumped b ON b.id = e.user_id"
    " RETURNING user_id, id"
)
_TRIM = (
    "DELETE FROM inbox_events e USING users u"
    " WHERE u.id = ANY($1::bigint[]) AND e.user_id = u.id AND e.id <= u.inbox_last_id - $2"
)
_READ = (
    "SELECT e.id AS event_id, e.created_at AS event_created_at, e.kind, e.change,"  # noqa: S608
    " r.id AS r_id, r.user_id AS r_user_id, r.status AS r_status,"
    " r.created_at AS r_created_at, r.decided_at AS r_decided_at, r.decided_by AS r_decided_by,"
    " ru.username AS r_username,"
    f" {channel_rows.COLUMNS}, {timeline_store.MESSAGE_COLUMNS}"
    " FROM inbox_events e JOIN channels c ON c.id = e.channel_id"
    " LEFT JOIN channel_join_requests r ON r.id = e.join_request_id"
    " LEFT JOIN users ru ON ru.id = r.user_id"
    " LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN users u ON u.id = m.sender_id"
    " WHERE e.user_id = $1 AND e.id > $2 AND e.id <= $3 ORDER BY e.id LIMIT $4"
)


async def record(connection: asyncpg.Connection, records: Sequence[InboxRecord]) -> dict[int, int]:
    """Store the events; returns each user's latest inbox id."""
    if not records:
        return {}
    users = sorted({record.user_id for record in records})
    await connection.execute(_LOCK_USERS, users)
    rows = await connection.fetch(
        _RECORD,
        [r.user_id for r in records],
        [r.kind.value for r in records],
        [r.channel_id for r in records],
        [r.join_request_id for r in records],
        [r.message_id for r in records],
        [r.change.value if r.change is not None else None for r in records],
    )
    await connection.execute(_TRIM, users, KEEP)
    latest: dict[int, int] = {}
    for row in rows:
        latest[row["user_id"]] = max(latest.get(row["user_id"], 0), row["id"])
    return latest


async def record_in(session: AsyncSession, records: Sequence[InboxRecord]) -> None:
    """Store the events in the session's transaction; the users' streams hear of them
    after the commit."""
    connection = await timeline_store.raw_connection(session)
    for user_id, last_id in (await record(connection, records)).items():
        await events.emit(session, events.InboxAppended(user_id, last_id))


def _join_request(row: asyncpg.Record) -> JoinRequestView | None:
    if row["r_id"] is None:
        return None
    return JoinRequestView(
        id=row["r_id"],
        channel_id=row["c_id"],
        user_id=row["r_user_id"],
        status=JoinRequestStatus(row["r_status"]),
        created_at=row["r_created_at"],
        decided_at=row["r_decided_at"],
        decided_by=row["r_decided_by"],
        username=row["r_username"],
    )


async def read(
    connection: asyncpg.Connection, *, user_id: int, after_id: int, up_to: int, limit: int
) -> list[InboxEntry]:
    """Up to `limit` of the user's events with ids after_id+1..up_to, in id order."""
    rows = await connection.fetch(_READ, user_id, after_id, up_to, limit)
    return [
        InboxEntry(
            id=row["event_id"],
            created_at=row["event_created_at"],
            kind=InboxKind(row["kind"]),
            channel=channel_rows.channel_view(row),
            join_request=_join_request(row),
            message=timeline_store.message_view(row) if row["id"] is not None else None,
            change=MembershipChange(row["change"]) if row["change"] is not None else None,
        )
        for row in rows
    ]


def start_after(*, last_id: int, after_id: int | None) -> int:
    """Where a stream starts: right after `after_id`, or before the last 50 events."""
    if after_id is None:
        return max(0, last_id - DEFAULT_REPLAY)
    if after_id < 0:
        raise errors.InvalidArgument("after_id must not be negative", field="after_id")
    if after_id > last_id:
        raise errors.OutOfRange(
            f"after_id {after_id} is beyond the inbox's last id {last_id}",
            reason=errors.Reason.AFTER_ID_BEYOND_LAST,
            metadata={"last_id": str(last_id)},
        )
    return after_id


async def last_id(connection: asyncpg.Connection, *, user_id: int) -> int:
    value = await connection.fetchval("SELECT inbox_last_id FROM users WHERE id = $1", user_id)
    return int(value or 0)
