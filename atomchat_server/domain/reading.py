"""Read markers (SPEC §8): the caller's channels as they read them, and moving
the marker.

A member's marker says "everything up to this seq is read"; it starts at the
channel's last seq when they join, and never moves back. The counts derived
from it are read by `channel_rows`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.domain import channel_rows, errors, events, pagination, timeline_store
from atomchat_server.domain.channels import get_active_channel, standing
from atomchat_server.domain.entities import Actor, ChannelView, Page, ReadStateView

_MARKER = "SELECT last_read_seq FROM channel_members WHERE channel_id = $1 AND user_id = $2"
_MOVE_MARKER = (
    "UPDATE channel_members SET last_read_seq = greatest(last_read_seq, least($3, c.last_seq))"
    " FROM channels c WHERE c.id = channel_members.channel_id"
    " AND channel_members.channel_id = $1 AND channel_members.user_id = $2"
    " RETURNING channel_members.last_read_seq"
)


async def list_my_channels(
    session: AsyncSession, *, actor: Actor, page_size: int, page_token: str
) -> Page[ChannelView]:
    """The caller's channels in id order, each with the caller's read state."""
    cursor = pagination.Cursor.read("my_channels", page_size, page_token)
    connection = await timeline_store.raw_connection(session)
    found = await channel_rows.my_channels(
        connection, user_id=actor.user_id, after_id=cursor.position or 0, limit=cursor.fetch
    )
    return cursor.page(found, lambda channel: channel, lambda channel: channel.id)


async def mark_read(
    session: AsyncSession, *, actor: Actor, channel_id: int, seq: int
) -> ReadStateView:
    """Move the caller's marker forward to `seq` (at most the channel's last seq)."""
    if seq < 0:
        raise errors.InvalidArgument("seq must not be negative", field="seq")
    await get_active_channel(session, channel_id=channel_id)
    if not (await standing(session, channel_id=channel_id, user_id=actor.user_id)).is_member:
        raise errors.not_a_member()
    connection = await timeline_store.raw_connection(session)
    before = await connection.fetchval(_MARKER, channel_id, actor.user_id)
    after = await connection.fetchval(_MOVE_MARKER, channel_id, actor.user_id, seq)
    if after != before:
        await events.emit(session, events.ReadMarkerMoved(actor.user_id, channel_id))
    state = await channel_rows.read_state(connection, user_id=actor.user_id, channel_id=channel_id)
    if state is None:
        raise errors.not_a_member()
    return state
