"""Posting messages, with group commit.

Each post is validated at once; then it waits in a queue. One task commits
whatever has queued up in a single transaction: it locks the channels
concerned (in id order), checks that every sender is still active and still
allowed to write there, answers repeated client_message_ids with the
original message, numbers the new messages with gap-free per-channel seqs,
inserts them, and issues one NOTIFY per channel (PostgreSQL delivers it only
if the transaction commits). Under load many posts share one commit, which
PostgreSQL serialises for transactions that notify; when idle, a post
commits alone at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from atomchat_server.db.engine import Database
from atomchat_server.domain import errors, events
from atomchat_server.domain.entities import Actor, MessageView
from atomchat_server.domain.messages import clean_client_message_id, clean_content

log = logging.getLogger(__name__)

MAX_BATCH = 500

_LOCK_CHANNELS = text(
    "SELECT id, last_seq FROM channels"
    " WHERE id = ANY(CAST(:ids AS bigint[])) AND is_active ORDER BY id FOR UPDATE"
)
_WRITERS = text(
    "SELECT m.channel_id, m.user_id FROM channel_members m"
    " WHERE m.channel_id = ANY(CAST(:channels AS bigint[]))"
    " AND m.user_id = ANY(CAST(:users AS bigint[]))"
)
_ACTIVE_USERS = text("SELECT id FROM users WHERE id = ANY(CAST(:users AS bigint[])) AND is_active")
_EXISTING = text(
    "SELECT m.id, m.channel_id, m.seq, m.sender_id, u.username, m.content, m.created_at,"
    " m.client_message_id"
    " FROM messages m JOIN users u ON u.id = m.sender_id"
    " JOIN unnest(CAST(:channels AS bigint[]), CAST(:senders AS bigint[]),"
    " CAST(:keys AS text[])) AS k(channel_id, sender_id, key)"
    " ON m.channel_id = k.channel_id AND m.sender_id = k.sender_id"
    " AND m.client_message_id = k.key"
)
_INSERT = text(
    "INSERT INTO messages (channel_id, seq, sender_id, content, client_message_id)"
    " SELECT * FROM unnest(CAST(:channels AS bigint[]), CAST(:seqs AS bigint[]),"
    " CAST(:senders AS bigint[]), CAST(:contents AS text[]), CAST(:keys AS text[]))"
    " RETURNING id, channel_id, seq, created_at"
)
_ADVANCE = text(
    "UPDATE channels SET last_seq = v.last_seq"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[])) AS v(id, last_seq)"
    " WHERE channels.id = v.id"
)


@dataclass(slots=True)
class _Post:
    actor: Actor
    channel_id: int
    content: str
    client_message_id: str | None
    future: asyncio.Future[MessageView]
    seq: int = 0
    outcome: MessageView | errors.DomainError | None = field(default=None, repr=False)
    duplicate_of: _Post | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.seq = 0
        self.outcome = None
        self.duplicate_of = None

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    def settle(self) -> None:
        """Answer the caller; only after the batch's transaction has ended."""
        outcome = self.duplicate_of.outcome if self.duplicate_of is not None else self.outcome
        if self.future.done() or outcome is None:
            return
        if isinstance(outcome, MessageView):
            self.future.set_result(outcome)
        else:
            self.future.set_exception(outcome)


class MessagePoster:
    """Commits posted messages in batches; see the module docstring."""

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._database = database
        self._max_batch = max_batch
        self._queue: deque[_Post] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="message-poster")

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

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
        if self._closing or self._task is None:
            raise errors.Unavailable("Server is shutting down", reason="SHUTTING_DOWN")
        post = _Post(
            actor=actor,
            channel_id=channel_id,
            content=clean_content(content),
            client_message_id=clean_client_message_id(client_message_id),
            future=asyncio.get_running_loop().create_future(),
        )
        self._queue.append(post)
        self._wake.set()
        return post.future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                count = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[_Post]) -> None:
        try:
            async with self._database.transaction() as session:
                await _write_batch(session, batch)
        except Exception as exc:
            if len(batch) > 1:
                # One bad post must not fail the others it was batched with.
                log.warning("a batch of %d messages failed (%r); one by one now", len(batch), exc)
                for post in batch:
                    post.reset()
                    await self._commit([post])
                return
            log.exception("committing a message failed")
            batch[0].fail(exc)
            return
        for post in batch:
            post.settle()


def _fail(post: _Post, error: errors.DomainError) -> None:
    post.outcome = error


async def _write_batch(session: AsyncSession, batch: list[_Post]) -> None:
    channel_ids = sorted({post.channel_id for post in batch})
    user_ids = sorted({post.actor.user_id for post in batch})
    last_seq: dict[int, int] = dict(
        (await session.execute(_LOCK_CHANNELS, {"ids": channel_ids})).all()
    )
    writers = set(await session.execute(_WRITERS, {"channels": channel_ids, "users": user_ids}))
    active = set((await session.scalars(_ACTIVE_USERS, {"users": user_ids})).all())

    accepted: list[_Post] = []
    for post in batch:
        if post.actor.user_id not in active:
            _fail(post, errors.invalid_credentials())
        elif post.channel_id not in last_seq:
            _fail(post, errors.channel_not_found())
        elif not (post.actor.is_moderator or (post.channel_id, post.actor.user_id) in writers):
            _fail(post, errors.not_a_member())
        else:
            accepted.append(post)

    fresh = await _resolve_repeats(session, accepted)
    if not fresh:
        return
    for post in fresh:
        last_seq[post.channel_id] += 1
        post.seq = last_seq[post.channel_id]
    inserted = {
        (channel_id, seq): (message_id, created_at)
        for message_id, channel_id, seq, created_at in await session.execute(
            _INSERT,
            {
                "channels": [post.channel_id for post in fresh],
                "seqs": [post.seq for post in fresh],
                "senders": [post.actor.user_id for post in fresh],
                "contents": [post.content for post in fresh],
                "keys": [post.client_message_id for post in fresh],
            },
        )
    }
    touched = sorted({post.channel_id for post in fresh})
    await session.execute(
        _ADVANCE, {"ids": touched, "seqs": [last_seq[channel] for channel in touched]}
    )
    by_channel: dict[int, list[MessageView]] = {channel: [] for channel in touched}
    for post in fresh:
        view = _view(post, *inserted[(post.channel_id, post.seq)])
        by_channel[post.channel_id].append(view)
        post.outcome = view
    for channel, views in by_channel.items():
        await events.emit(session, events.MessagesPosted(channel, tuple(views)))


async def _resolve_repeats(session: AsyncSession, posts: list[_Post]) -> list[_Post]:
    """Answer repeated client_message_ids with the original; return the posts to insert."""
    keyed = [post for post in posts if post.client_message_id is not None]
    existing: dict[tuple[int, int, str], MessageView] = {}
    if keyed:
        rows = await session.execute(
            _EXISTING,
            {
                "channels": [post.channel_id for post in keyed],
                "senders": [post.actor.user_id for post in keyed],
                "keys": [post.client_message_id for post in keyed],
            },
        )
        for row in rows:
            view = MessageView(*row)
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


def _view(post: _Post, message_id: int, created_at: datetime) -> MessageView:
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
