"""Posting messages: what one batch decides.

Each post is validated at once; then it waits in the group committer's
queue (db/group_commit.py). A batch is written in one transaction: it locks
the channels concerned (in id order), checks that every sender is still
active and still allowed to write there, answers repeated
client_message_ids with the original message, numbers the new messages
with gap-free per-channel seqs, inserts them, and issues the channels'
NOTIFYs (PostgreSQL delivers them only if the transaction commits). Under
load many posts share one commit; when idle, a post commits alone at once.

This is the hot path of the service: the batch talks to its asyncpg
connection directly, in five statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from atomchat_server.db.engine import Timeouts
from atomchat_server.db.group_commit import GroupCommitter, OnCommit
from atomchat_server.domain import errors, events, policy
from atomchat_server.domain.entities import Actor, MessageView
from atomchat_server.domain.messages import clean_client_message_id, clean_content

MAX_BATCH = 500
APPLICATION_NAME = "atomchat-poster"

_LOCK_CHANNELS = (
    "SELECT id, last_seq FROM channels"
    " WHERE id = ANY($1::bigint[]) AND is_active ORDER BY id FOR UPDATE"
)
# Every sender, whether still active, and the channels of the batch they belong to.
_SENDERS = (
    "SELECT u.id AS user_id, u.is_active, m.channel_id FROM users u"
    " LEFT JOIN channel_members m ON m.user_id = u.id AND m.channel_id = ANY($2::bigint[])"
    " WHERE u.id = ANY($1::bigint[])"
)
_EXISTING = (
    "SELECT m.id, m.channel_id, m.seq, m.sender_id, u.username AS sender_username, m.content,"
    " m.created_at, m.client_message_id"
    " FROM messages m JOIN users u ON u.id = m.sender_id"
    " JOIN unnest($1::bigint[], $2::bigint[], $3::text[]) AS k(channel_id, sender_id, key)"
    " ON m.channel_id = k.channel_id AND m.sender_id = k.sender_id"
    " AND m.client_message_id = k.key"
)
_INSERT = (
    "INSERT INTO messages (channel_id, seq, sender_id, content, client_message_id)"
    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])"
    " RETURNING id, channel_id, seq, created_at"
)
# Advance the channels' last seq and notify, in one statement.
_ADVANCE_AND_NOTIFY = (
    "WITH advanced AS ("
    " UPDATE channels SET last_seq = v.last_seq"
    " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, last_seq)"
    " WHERE channels.id = v.id RETURNING channels.id)"
    " SELECT (SELECT count(*) FROM advanced), count(pg_notify($3, payload))"
    " FROM unnest($4::text[]) AS payload"
)


@dataclass(slots=True)
class _Post:
    actor: Actor
    channel_id: int
    content: str
    client_message_id: str | None
    future: asyncio.Future[MessageView]
    seq: int = 0
    outcome: MessageView | BaseException | None = field(default=None, repr=False)
    duplicate_of: _Post | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.seq = 0
        self.outcome = None
        self.duplicate_of = None

    def fail(self, error: BaseException) -> None:
        self.duplicate_of = None
        self.outcome = error

    def settle(self) -> None:
        """Answer the caller, on the caller's loop, once the batch's transaction has ended."""
        outcome = self.duplicate_of.outcome if self.duplicate_of is not None else self.outcome
        if self.future.done() or outcome is None:
            return
        if isinstance(outcome, MessageView):
            self.future.set_result(outcome)
        else:
            self.future.set_exception(outcome)


class MessagePoster:
    """Posts messages through a group committer; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_commit: OnCommit,
        max_batch: int = MAX_BATCH,
        timeouts: Timeouts | None = None,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self._origin = origin
        self._committer: GroupCommitter[_Post] = GroupCommitter(
            dsn,
            write_batch=self._write,
            on_commit=on_commit,
            max_batch=max_batch,
            application_name=APPLICATION_NAME,
            timeouts=timeouts,
            on_unavailable=on_unavailable,
        )

    def start(self) -> None:
        self._committer.start()

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        await self._committer.close()

    async def post(
        self, *, actor: Actor, channel_id: int, content: str, client_message_id: str = ""
    ) -> MessageView:
        """Post and wait for the commit: the stored message, or the original of a repeat."""
        return await self.submit(
            actor=actor, channel_id=channel_id, content=content, client_message_id=client_message_id
        )

    def submit(
        self, *, actor: Actor, channel_id: int, content: str, client_message_id: str = ""
    ) -> asyncio.Future[MessageView]:
        """Queue a post; invalid content fails at once, the rest when the batch commits.

        Posts are committed in the order they were submitted.
        """
        if not self._committer.accepting:
            raise errors.shutting_down()
        post = _Post(
            actor=actor,
            channel_id=channel_id,
            content=clean_content(content),
            client_message_id=clean_client_message_id(client_message_id),
            future=asyncio.get_running_loop().create_future(),
        )
        self._committer.submit(post)
        return post.future

    async def _write(
        self, connection: asyncpg.Connection, batch: list[_Post]
    ) -> list[events.Event]:
        return await _write_batch(connection, batch, self._origin)


async def _write_batch(
    connection: asyncpg.Connection, batch: list[_Post], origin: str
) -> list[events.Event]:
    """Decide and store one batch; returns the events to hand out after the commit."""
    channel_ids = sorted({post.channel_id for post in batch})
    user_ids = sorted({post.actor.user_id for post in batch})
    last_seq: dict[int, int] = {
        row["id"]: row["last_seq"] for row in await connection.fetch(_LOCK_CHANNELS, channel_ids)
    }
    active: set[int] = set()
    members: set[tuple[int, int]] = set()
    for row in await connection.fetch(_SENDERS, user_ids, channel_ids):
        if row["is_active"]:
            active.add(row["user_id"])
        if row["channel_id"] is not None:
            members.add((row["channel_id"], row["user_id"]))

    accepted: list[_Post] = []
    for post in batch:
        if post.actor.user_id not in active:
            post.fail(errors.invalid_credentials())
        elif post.channel_id not in last_seq:
            post.fail(errors.channel_not_found())
        elif not policy.can_take_part(
            is_member=(post.channel_id, post.actor.user_id) in members,
            is_moderator=post.actor.is_moderator,
        ):
            post.fail(errors.not_a_member())
        else:
            accepted.append(post)

    fresh = await _resolve_repeats(connection, accepted)
    if not fresh:
        return []
    for post in fresh:
        last_seq[post.channel_id] += 1
        post.seq = last_seq[post.channel_id]
    inserted = {
        (row["channel_id"], row["seq"]): row
        for row in await connection.fetch(
            _INSERT,
            [post.channel_id for post in fresh],
            [post.seq for post in fresh],
            [post.actor.user_id for post in fresh],
            [post.content for post in fresh],
            [post.client_message_id for post in fresh],
        )
    }
    touched = sorted({post.channel_id for post in fresh})
    by_channel: dict[int, list[MessageView]] = {channel: [] for channel in touched}
    for post in fresh:
        row = inserted[(post.channel_id, post.seq)]
        view = _view(post, message_id=row["id"], created_at=row["created_at"])
        by_channel[post.channel_id].append(view)
        post.outcome = view
    posted: list[events.Event] = [
        events.MessagesPosted(channel, tuple(views)) for channel, views in by_channel.items()
    ]
    payloads = [payload for event in posted for payload in events.encode(origin, event)]
    await connection.fetch(
        _ADVANCE_AND_NOTIFY,
        touched,
        [last_seq[channel] for channel in touched],
        events.NOTIFY_CHANNEL,
        payloads,
    )
    return posted


async def _resolve_repeats(connection: asyncpg.Connection, posts: list[_Post]) -> list[_Post]:
    """Answer repeated client_message_ids with the original; return the posts to insert."""
    keyed = [post for post in posts if post.client_message_id is not None]
    existing: dict[tuple[int, int, str], MessageView] = {}
    if keyed:
        rows = await connection.fetch(
            _EXISTING,
            [post.channel_id for post in keyed],
            [post.actor.user_id for post in keyed],
            [post.client_message_id for post in keyed],
        )
        for row in rows:
            view = MessageView(**row)
            existing[(view.channel_id, view.sender_id, view.client_message_id or "")] = view
    fresh: list[_Post] = []
    first_in_batch: dict[tuple[int, int, str], _Post] = {}
    for post in posts:
        if post.client_message_id is None:
            fresh.append(post)
            continue
        key = (post.channel_id, post.actor.user_id, post.client_message_id)
        if key in existing:
            post.outcome = existing[key]
        elif key in first_in_batch:
            post.duplicate_of = first_in_batch[key]
        else:
            first_in_batch[key] = post
            fresh.append(post)
    return fresh


def _view(post: _Post, *, message_id: int, created_at: datetime) -> MessageView:
    return MessageView(
        id=message_id,
        channel_id=post.channel_id,
        seq=post.seq,
        sender_id=post.actor.user_id,
        sender_username=post.actor.username,
        content=post.content,
        created_at=created_at,
        client_message_id=post.client_message_id,
    )
