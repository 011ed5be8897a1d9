"""Writing the timeline, with group commit: posts, edits, deletions, reactions.

Each write is validated at once (`new_post`, `new_change`, on the server's
loop); then it waits in the group committer's queue (db/group_commit.py),
in the poster's process (poster_process.py), where a TimelineWriter runs. A
batch is written in one transaction: it locks the channels concerned (in id
order, in the round trip of its BEGIN) and checks that every writer is still
active and still allowed to write there.
Consecutive posts are written together: repeated client_message_ids are
answered with the original, reply targets and `@mentions` are resolved, the
messages get gap-free per-channel seqs and are inserted in one statement.
Which of the batch's keys are stored already is asked with the writers'
check, after the locks are held (a statement of its own, so it sees every
batch committed before them), as are the channels' last seqs and ids for the
batch's posts; the originals are read, by id, only for repeats: a repeat is
a client's retry, rare, and reading for every batch cost each a round trip.
Since a post's id and time are known before it is stored, its row is
inserted by the statement after it: the next run's first, or the batch's
last, which also advances the channels' seqs and notifies. A change to a
message (an edit, a deletion, a reaction added or taken back) takes the
channel's next seq too, and is recorded in message_updates, unless it
changes nothing (deleting a tombstone, reacting twice). Every seq is given
in the order the writes were submitted, and only to writes that succeed: the
timeline has no gap. Users a post mentions (or an edit mentions anew) get a
`mention` in their inbox. The batch ends with one NOTIFY per channel
(PostgreSQL delivers it only if the transaction commits). Under load many
writes share one commit; when idle, a write commits alone at once. Channels
are spread over the committer's lanes (LANES), so that one lane's batch is
written while another's waits for PostgreSQL; a channel's writes stay in
one lane.

This is the hot path of the service: a batch of plain posts talks to its
asyncpg connection directly, in four round trips: BEGIN with the locks, the
writers' check, the rows with the seqs and the notifications, COMMIT.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

import asyncpg

from atomchat_server.db.group_commit import GroupCommitter, ObserveCommit, OnCommit
from atomchat_server.db.timeouts import Timeouts
from atomchat_server.domain import errors, events, inbox, policy, text, timeline, timeline_store
from atomchat_server.domain.entities import Actor, MessageView, TimelineEntry, UpdateView
from atomchat_server.domain.kinds import InboxKind, Role, UpdateKind

# Posts written by one transaction at most. Under a flood of posts every batch
# is full and its time is mostly per row (the insert with its indexes and
# foreign-key checks, about 55 µs a row on a loaded 2-core machine), but each
# also pays a fixed part: begin, the channels' lock, the writers' check and
# the commit. 200 senders in 200 channels were acked at 6.3k posts/s with
# batches of 500 (81 ms each) and at 7.4-7.8k with 2000 (about 195 ms):
# bench/README.md, "Ingestion".
MAX_BATCH = 2000
APPLICATION_NAME = "atomchat-poster"
# Channels are spread over this many lanes of the group committer, each with
# its connection: one lane's batch is written while another's waits for
# PostgreSQL. A channel's writes stay in one lane, so in their order.
LANES = 2

# One row, of arrays: those of the writers in $1 still active; the writers'
# memberships in the batch's channels $2 (channel, user, whether owner, in
# that order); the batch's active channels (locked by then) and their last
# seqs; the transaction's time (every row's created_at); $6 new message ids;
# and for each of the batch's (channel, sender, client_message_id) keys in
# $3-$5, the id of the message stored with it, or NULL. Each key is one probe
# of the unique index, a scalar subquery: as a join (or EXISTS), PostgreSQL may
# choose to hash all of `messages` for a batch of many keys.
_WRITERS = (
    "SELECT ARRAY(SELECT u.id FROM users u WHERE u.id = ANY($1::bigint[]) AND u.is_active)"
    " AS active, m.channels AS member_channels, m.users AS member_users,"
    " m.owners AS member_owners, c.ids AS channel_ids, c.last_seqs, now() AS now,"
    " ARRAY(SELECT nextval('messages_id_seq')"
    " FROM generate_series(1, $6::integer) AS n ORDER BY n) AS new_ids,"
    " ARRAY(SELECT (SELECT s.id FROM messages s WHERE s.channel_id = k.channel_id"
    " AND s.sender_id = k.sender_id AND s.client_message_id = k.key)"
    " FROM unnest($3::bigint[], $4::bigint[], $5::text[]) WITH ORDINALITY"
    " AS k(channel_id, sender_id, key, ordinal) ORDER BY k.ordinal) AS stored"
    " FROM (SELECT coalesce(array_agg(channel_id ORDER BY channel_id, user_id), '{}') AS channels,"
    " coalesce(array_agg(user_id ORDER BY channel_id, user_id), '{}') AS users,"
    " coalesce(array_agg(is_owner ORDER BY channel_id, user_id), '{}') AS owners"
    " FROM channel_members"
    " WHERE user_id = ANY($1::bigint[]) AND channel_id = ANY($2::bigint[])) AS m,"
    " (SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids,"
    " coalesce(array_agg(last_seq ORDER BY id), '{}') AS last_seqs"
    " FROM channels WHERE id = ANY($2::bigint[]) AND is_active) AS c"
)
_REPLY_TARGETS = "SELECT id, channel_id FROM messages WHERE id = ANY($1::bigint[])"
# Users an @mention may name: active, with their role and memberships in the batch's channels.
_MENTIONABLE = (
    "SELECT u.id, u.username_key, u.role, m.channel_id FROM users u"
    " LEFT JOIN channel_members m ON m.user_id = u.id AND m.channel_id = ANY($2::bigint[])"
    " WHERE u.username_key = ANY($1::text[]) AND u.is_active"
)
# Posts' rows, their ids given; created_at is the transaction's time.
_INSERT = (
    "INSERT INTO messages (id, channel_id, seq, sender_id, content, client_message_id,"
    " reply_to_id, mention_user_ids)"
    " SELECT i, c, s, sender, body, k, NULLIF(reply, 0), mentions::bigint[]"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],"
    " $6::text[], $7::bigint[], $8::text[]) AS v(i, c, s, sender, body, k, reply, mentions)"
)
_EDIT = (
    "UPDATE messages SET content = $2, edited_at = $3, mention_user_ids = $4::bigint[]"
    " WHERE id = $1"
)
_DELETE = "UPDATE messages SET content = '', deleted_at = $3, deleted_by = $2 WHERE id = $1"
# clock_timestamp(), not the transaction's now(): reactions in one batch keep their order.
_REACT = (
    "INSERT INTO message_reactions (message_id, emoji, user_id, created_at)"
    " VALUES ($1, $2, $3, clock_timestamp())"
)
# Taking a reaction back; if it was the emoji's first, the next one inherits its
# time, so that the emoji keeps its place among the message's reactions.
_UNREACT = (
    "WITH gone AS (DELETE FROM message_reactions"
    " WHERE message_id = $1 AND emoji = $2 AND user_id = $3 RETURNING created_at)"
    " UPDATE message_reactions r SET created_at = gone.created_at FROM gone"
    " WHERE r.message_id = $1 AND r.emoji = $2 AND r.created_at > gone.created_at"
    " AND r.user_id = (SELECT n.user_id FROM message_reactions n"
    " WHERE n.message_id = $1 AND n.emoji = $2 AND n.user_id <> $3"
    " ORDER BY n.created_at, n.user_id LIMIT 1)"
)
_RECORD_UPDATES = (
    "INSERT INTO message_updates (channel_id, seq, kind, message_id)"
    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])"
)
# The batch's last statement: insert the posts still to insert ($1-$8 as in
# _INSERT; none for a batch of changes), advance the channels' last seq and notify.
_INSERT_ADVANCE_AND_NOTIFY = (
    "WITH inserted AS (" + _INSERT + "),"  # noqa: S608 - constants only
    " advanced AS (UPDATE channels SET last_seq = v.last_seq"
    " FROM unnest($9::bigint[], $10::bigint[]) AS v(id, last_seq)"
    " WHERE channels.id = v.id RETURNING channels.id)"
    " SELECT (SELECT count(*) FROM advanced), count(pg_notify($11, payload))"
    " FROM unnest($12::text[]) AS payload"
)


class Change(Enum):
    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"
    UNREACT = "unreact"


Outcome = MessageView | BaseException
# reply(ticket, outcome): a write's answer, once its batch's transaction has ended.
Reply = Callable[[int, Outcome], None]


@dataclass(slots=True)
class _Write:
    """A write waiting for its batch; `ticket` names it to the one who submitted it."""

    actor: Actor
    channel_id: int
    ticket: int
    outcome: Outcome | None = field(default=None, repr=False)
    # Set by the TimelineWriter it is submitted to.
    reply: Reply | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.outcome = None

    def fail(self, error: BaseException) -> None:
        self.outcome = error

    def result(self) -> Outcome | None:
        return self.outcome

    def settle(self) -> None:
        """Answer the submitter, once the batch's transaction has ended."""
        outcome = self.result()
        if outcome is not None and self.reply is not None:
            self.reply(self.ticket, outcome)


@dataclass(slots=True)
class PostWork(_Write):
    content: str = ""
    client_message_id: str | None = None
    reply_to_id: int = 0
    seq: int = 0
    duplicate_of: PostWork | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.seq = 0
        self.outcome = None
        self.duplicate_of = None

    def fail(self, error: BaseException) -> None:
        self.duplicate_of = None
        self.outcome = error

    def result(self) -> Outcome | None:
        return self.duplicate_of.outcome if self.duplicate_of is not None else self.outcome

    def __reduce__(self) -> tuple[object, ...]:
        # Crosses to the poster's process as what was asked, in a tuple (see MessageView's).
        asked = (
            self.actor,
            self.channel_id,
            self.ticket,
            self.content,
            self.client_message_id,
            self.reply_to_id,
        )
        return (_asked_post, (asked,))


@dataclass(slots=True)
class ChangeWork(_Write):
    change: Change = Change.EDIT
    message_id: int = 0
    # The new content of an edit, or the emoji of a reaction.
    value: str = ""

    def __reduce__(self) -> tuple[object, ...]:
        asked = (self.actor, self.channel_id, self.ticket, self.change, self.message_id, self.value)
        return (_asked_change, (asked,))


def _asked_post(asked: tuple[Actor, int, int, str, str | None, int]) -> PostWork:
    """A post as it was asked, checked already (new_post) or in another process."""
    actor, channel_id, ticket, content, client_message_id, reply_to_id = asked
    return PostWork(
        actor=actor,
        channel_id=channel_id,
        ticket=ticket,
        content=content,
        client_message_id=client_message_id,
        reply_to_id=reply_to_id,
    )


def _asked_change(asked: tuple[Actor, int, int, Change, int, str]) -> ChangeWork:
    actor, channel_id, ticket, change, message_id, value = asked
    return ChangeWork(
        actor=actor,
        channel_id=channel_id,
        ticket=ticket,
        change=change,
        message_id=message_id,
        value=value,
    )


Work = PostWork | ChangeWork


CONTENT_MAX = 4000
CLIENT_MESSAGE_ID_MAX = 128


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


def new_post(
    ticket: int,
    *,
    actor: Actor,
    channel_id: int,
    content: str,
    client_message_id: str = "",
    reply_to_id: int = 0,
) -> PostWork:
    """A post, checked as far as it can be without the database (invalid content fails here)."""
    return _asked_post(
        (
            actor,
            channel_id,
            ticket,
            clean_content(content),
            clean_client_message_id(client_message_id),
            _reply_target(reply_to_id),
        )
    )


def new_change(
    ticket: int, *, actor: Actor, channel_id: int, message_id: int, change: Change, value: str = ""
) -> ChangeWork:
    """An edit (value: the content), a deletion, a reaction or its taking back
    (value: the emoji), checked as far as it can be without the database."""
    if change is Change.EDIT:
        value = clean_content(value)
    elif change in (Change.REACT, Change.UNREACT):
        value = timeline.clean_emoji(value)
    return _asked_change((actor, channel_id, ticket, change, message_id, value))


class TimelineWriter:
    """Writes the timeline through a group committer; see the module docstring.

    It runs in the poster's process (poster_process.py): each write's answer
    goes to `reply`, and what a batch committed to `on_commit`, first.
    """

    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_commit: OnCommit,
        reply: Reply,
        max_batch: int = MAX_BATCH,
        timeouts: Timeouts | None = None,
        on_unavailable: Callable[[], None] | None = None,
        observe: ObserveCommit | None = None,
    ) -> None:
        self._origin = origin
        self._reply = reply
        self._committer: GroupCommitter[Work] = GroupCommitter(
            dsn,
            write_batch=self._write,
            opening=_lock_channels,
            on_commit=on_commit,
            max_batch=max_batch,
            application_name=APPLICATION_NAME,
            timeouts=timeouts,
            on_unavailable=on_unavailable,
            observe=observe,
            lanes=LANES,
            lane_of=_channel,
        )

    def start(self) -> None:
        self._committer.start()

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        await self._committer.close()

    def submit(self, work: Work) -> None:
        """Queue a write; writes are committed in the order they were submitted."""
        work.reply = self._reply
        self._committer.submit(work)

    async def _write(self, connection: asyncpg.Connection, batch: list[Work]) -> list[events.Event]:
        return await _write_batch(connection, batch, self._origin)


def _channel(work: Work) -> int:
    return work.channel_id


def _reply_target(reply_to_id: int) -> int:
    if reply_to_id < 0:
        raise _bad_reply_target()
    return reply_to_id


def _bad_reply_target() -> errors.InvalidArgument:
    return errors.InvalidArgument(
        "reply_to_id must name a message of the same channel",
        reason=errors.Reason.BAD_REPLY_TARGET,
        field="reply_to_id",
    )


@dataclass(slots=True)
class _Batch:
    """What a batch knows once its channels are locked."""

    last_seq: dict[int, int]
    now: datetime
    active: set[int]
    standing: dict[tuple[int, int], policy.Standing]
    # Ids for the batch's posts, in ascending order: one for each post at most.
    new_ids: Iterator[int] = field(default_factory=lambda: iter(()))
    # The batch's (channel, sender, client_message_id) keys stored before now,
    # with their message's id: found when the channels were locked, or
    # inserted by this batch since.
    stored_keys: dict[tuple[int, int, str], int] = field(default_factory=dict)
    entries: dict[int, list[TimelineEntry]] = field(default_factory=dict)
    # Posts decided but not stored yet: the batch's next statement inserts them.
    unstored: list[MessageView] = field(default_factory=list)
    # The mentions to store in the inboxes of those mentioned.
    mentions: list[inbox.InboxRecord] = field(default_factory=list)

    def next_seq(self, channel_id: int) -> int:
        self.last_seq[channel_id] += 1
        return self.last_seq[channel_id]

    def standing_of(self, channel_id: int, user_id: int) -> policy.Standing:
        return self.standing.get((channel_id, user_id), policy.OUTSIDER)

    def add(self, entry: TimelineEntry) -> None:
        self.entries.setdefault(entry.channel_id, []).append(entry)

    def mention(self, message: MessageView, user_ids: Sequence[int]) -> None:
        """Tell these users the message mentions them (never its sender)."""
        for user_id in user_ids:
            if user_id != message.sender_id:
                self.mentions.append(
                    inbox.InboxRecord(
                        user_id=user_id,
                        kind=InboxKind.MENTION,
                        channel_id=message.channel_id,
                        message_id=message.id,
                    )
                )


async def _write_batch(
    connection: asyncpg.Connection, batch: list[Work], origin: str
) -> list[events.Event]:
    """Decide and store one batch; returns the events to hand out after the commit."""
    state = await _check_writers(connection, batch)
    accepted: list[Work] = []
    for work in batch:
        if work.actor.user_id not in state.active:
            work.fail(errors.invalid_credentials())
        elif work.channel_id not in state.last_seq:
            work.fail(errors.channel_not_found())
        else:
            accepted.append(work)
    # Runs of the same kind of write, in submission order.
    for _, run in itertools.groupby(accepted, key=type):
        # What this run reads may be the previous run's posts.
        await _store(connection, state)
        works = list(run)
        posts = [work for work in works if isinstance(work, PostWork)]
        if posts:
            await _write_posts(connection, posts, state)
        else:
            await _write_changes(connection, [w for w in works if isinstance(w, ChangeWork)], state)
    if not state.entries:
        return []
    appended: list[events.Event] = [
        events.TimelineAppended(channel, tuple(entries))
        for channel, entries in sorted(state.entries.items())
    ]
    if state.mentions:
        await _store(connection, state)
        latest = await inbox.record(connection, state.mentions)
        appended += [events.InboxAppended(user, last) for user, last in sorted(latest.items())]
    payloads = [payload for event in appended for payload in events.encode(origin, event)]
    touched = sorted(state.entries)
    await connection.fetch(
        _INSERT_ADVANCE_AND_NOTIFY,
        *_columns(state.unstored),
        touched,
        [state.last_seq[channel] for channel in touched],
        events.NOTIFY_CHANNEL,
        payloads,
    )
    return appended


def _lock_channels(batch: list[Work]) -> str:
    """Lock the batch's channels, in id order; sent with BEGIN, so the ids are literals."""
    ids = ",".join(str(int(channel_id)) for channel_id in sorted({w.channel_id for w in batch}))
    # Only integers are formatted into the statement.
    return f"SELECT 1 FROM channels WHERE id IN ({ids}) AND is_active ORDER BY id FOR UPDATE"  # noqa: S608


async def _check_writers(connection: asyncpg.Connection, batch: list[Work]) -> _Batch:
    """What the batch needs to know, read once its channels are locked."""
    channel_ids = sorted({work.channel_id for work in batch})
    user_ids = sorted({work.actor.user_id for work in batch})
    keys = [key for work in batch if (key := _key(work)) is not None]
    # Aggregates over whole tables, and arrays: one row.
    (found,) = await connection.fetch(
        _WRITERS,
        user_ids,
        channel_ids,
        [channel for channel, _, _ in keys],
        [sender for _, sender, _ in keys],
        [key for _, _, key in keys],
        sum(1 for work in batch if isinstance(work, PostWork)),
    )
    state = _Batch(
        last_seq=dict(zip(found["channel_ids"], found["last_seqs"], strict=True)),
        now=found["now"],
        active=set(found["active"]),
        standing={
            (channel_id, user_id): policy.Standing(is_member=True, is_owner=is_owner)
            for channel_id, user_id, is_owner in zip(
                found["member_channels"], found["member_users"], found["member_owners"], strict=True
            )
        },
        new_ids=iter(found["new_ids"]),
    )
    state.stored_keys.update(
        (key, message_id)
        for key, message_id in zip(keys, found["stored"], strict=True)
        if message_id is not None
    )
    return state


def _key(work: Work) -> tuple[int, int, str] | None:
    """A post's idempotency key: (channel, sender, client_message_id), if it has one."""
    if isinstance(work, PostWork) and work.client_message_id is not None:
        return (work.channel_id, work.actor.user_id, work.client_message_id)
    return None


async def _write_posts(
    connection: asyncpg.Connection, posts: list[PostWork], state: _Batch
) -> None:
    allowed: list[PostWork] = []
    for post in posts:
        if policy.can_take_part(
            is_member=state.standing_of(post.channel_id, post.actor.user_id).is_member,
            is_moderator=post.actor.is_moderator,
        ):
            allowed.append(post)
        else:
            post.fail(errors.not_a_member())
    await _check_reply_targets(connection, allowed)
    fresh = await _resolve_repeats(
        connection, [p for p in allowed if p.outcome is None], state.stored_keys
    )
    if not fresh:
        return
    mentions = await _resolve_mentions(
        connection, [(post.channel_id, post.content) for post in fresh]
    )
    for post, mentioned in zip(fresh, mentions, strict=True):
        post.seq = state.next_seq(post.channel_id)
        view = MessageView(
            id=next(state.new_ids),
            channel_id=post.channel_id,
            seq=post.seq,
            sender_id=post.actor.user_id,
            sender_username=post.actor.username,
            content=post.content,
            created_at=state.now,
            client_message_id=post.client_message_id,
            reply_to_id=post.reply_to_id or None,
            mention_user_ids=tuple(mentioned),
        )
        state.unstored.append(view)
        state.add(view)
        if mentioned:
            state.mention(view, mentioned)
        if (key := _key(post)) is not None:
            state.stored_keys[key] = view.id
        post.outcome = view


async def _store(connection: asyncpg.Connection, state: _Batch) -> None:
    """Insert the posts decided so far, before a statement that may read them."""
    if state.unstored:
        await connection.execute(_INSERT, *_columns(state.unstored))
        state.unstored = []


def _columns(posts: Sequence[MessageView]) -> tuple[list[object], ...]:
    """The posts' rows as the columns _INSERT takes, in its order."""
    return (
        [post.id for post in posts],
        [post.channel_id for post in posts],
        [post.seq for post in posts],
        [post.sender_id for post in posts],
        [post.content for post in posts],
        [post.client_message_id for post in posts],
        [post.reply_to_id or 0 for post in posts],
        [_array_literal(post.mention_user_ids) for post in posts],
    )


def _array_literal(values: Sequence[int]) -> str:
    return "{" + ",".join(str(value) for value in values) + "}"


async def _check_reply_targets(connection: asyncpg.Connection, posts: list[PostWork]) -> None:
    """A reply must name a message of its own channel (deleted ones too)."""
    replying = [post for post in posts if post.reply_to_id]
    if not replying:
        return
    rows = await connection.fetch(_REPLY_TARGETS, [post.reply_to_id for post in replying])
    channel_of = {row["id"]: row["channel_id"] for row in rows}
    for post in replying:
        if channel_of.get(post.reply_to_id) != post.channel_id:
            post.fail(_bad_reply_target())


async def _resolve_mentions(
    connection: asyncpg.Connection, texts: list[tuple[int, str]]
) -> list[list[int]]:
    """For each (channel, content): the users its @usernames name who may read the
    channel (members and moderators), in the order first named."""
    keys_of = [timeline.mentioned_keys(content) if "@" in content else [] for _, content in texts]
    every_key = sorted({key for keys in keys_of for key in keys})
    if not every_key:
        return [[] for _ in texts]
    channels = sorted({channel for channel, _ in texts})
    users: dict[str, int] = {}
    readers: set[tuple[int, int]] = set()
    moderators: set[int] = set()
    for row in await connection.fetch(_MENTIONABLE, every_key, channels):
        users[row["username_key"]] = row["id"]
        if row["role"] == Role.MODERATOR:
            moderators.add(row["id"])
        if row["channel_id"] is not None:
            readers.add((row["channel_id"], row["id"]))
    resolved: list[list[int]] = []
    for (channel, _), keys in zip(texts, keys_of, strict=True):
        named = [users[key] for key in keys if key in users]
        resolved.append(
            [user for user in named if user in moderators or (channel, user) in readers]
        )
    return resolved


async def _resolve_repeats(
    connection: asyncpg.Connection,
    posts: list[PostWork],
    stored_keys: dict[tuple[int, int, str], int],
) -> list[PostWork]:
    """Answer repeated client_message_ids with the original (as it stands now);
    return the posts to insert."""
    original_ids = {stored_keys[key] for post in posts if (key := _key(post)) in stored_keys}
    originals = (
        await timeline_store.messages_by_id(connection, sorted(original_ids))
        if original_ids
        else {}
    )
    fresh: list[PostWork] = []
    first_in_batch: dict[tuple[int, int, str], PostWork] = {}
    for post in posts:
        key = _key(post)
        if key is None:
            fresh.append(post)
        elif key in stored_keys:
            post.outcome = originals[stored_keys[key]]
        elif key in first_in_batch:
            post.duplicate_of = first_in_batch[key]
        else:
            first_in_batch[key] = post
            fresh.append(post)
    return fresh


@dataclass(slots=True)
class _Target:
    """What a run of changes needs to know of a message as it goes."""

    message: MessageView
    deleted: bool
    reactions: dict[str, set[int]]


async def _write_changes(
    connection: asyncpg.Connection, changes: list[ChangeWork], state: _Batch
) -> None:
    found = await timeline_store.messages_by_id(connection, [c.message_id for c in changes])
    targets = {
        message_id: _Target(
            message,
            message.deleted,
            {reaction.emoji: set(reaction.user_ids) for reaction in message.reactions},
        )
        for message_id, message in found.items()
    }
    updates: list[tuple[int, int, UpdateKind, int]] = []
    touched: list[ChangeWork] = []
    for work in changes:
        target = targets.get(work.message_id)
        if target is None or target.message.channel_id != work.channel_id:
            work.fail(errors.message_not_found())
            continue
        try:
            kind = await _apply(connection, work, target, state)
        except errors.DomainError as error:
            work.fail(error)
            continue
        touched.append(work)
        if kind is not None:
            seq = state.next_seq(work.channel_id)
            updates.append((work.channel_id, seq, kind, work.message_id))
    if not touched:
        return
    if updates:
        await connection.execute(
            _RECORD_UPDATES,
            [update[0] for update in updates],
            [update[1] for update in updates],
            [update[2].value for update in updates],
            [update[3] for update in updates],
        )
    current = await timeline_store.messages_by_id(
        connection, sorted({work.message_id for work in touched})
    )
    for work in touched:
        work.outcome = current[work.message_id]
    for _, seq, kind, message_id in updates:
        state.add(UpdateView(seq=seq, kind=kind, message=current[message_id]))


async def _apply(
    connection: asyncpg.Connection, work: ChangeWork, target: _Target, state: _Batch
) -> UpdateKind | None:
    """Check and store one change; the kind of update it makes, or None if it makes none."""
    standing = state.standing_of(work.channel_id, work.actor.user_id)
    sender_id = target.message.sender_id
    if work.change is Change.DELETE:
        policy.ensure_can_delete(work.actor, sender_id=sender_id, standing=standing)
        if target.deleted:
            return None
        await connection.execute(_DELETE, work.message_id, work.actor.user_id, state.now)
        target.deleted = True
        return UpdateKind.DELETED
    if work.change is Change.EDIT:
        policy.ensure_can_edit(work.actor, sender_id=sender_id, standing=standing)
    else:
        policy.ensure_can_read_channel(work.actor, standing)
    if target.deleted:
        raise errors.FailedPrecondition(
            "The message is deleted", reason=errors.Reason.MESSAGE_DELETED
        )
    if work.change is Change.EDIT:
        (mentioned,) = await _resolve_mentions(connection, [(work.channel_id, work.value)])
        await connection.execute(_EDIT, work.message_id, work.value, state.now, mentioned)
        # Those the edit mentions anew hear of it; the others did already.
        before = set(target.message.mention_user_ids)
        state.mention(target.message, [user for user in mentioned if user not in before])
        target.message = replace(target.message, mention_user_ids=tuple(mentioned))
        return UpdateKind.EDITED
    return await _react(connection, work, target)


async def _react(
    connection: asyncpg.Connection, work: ChangeWork, target: _Target
) -> UpdateKind | None:
    """Add or take back a reaction; None when that changes nothing."""
    user_id = work.actor.user_id
    reacted = target.reactions.setdefault(work.value, set())
    adding = work.change is Change.REACT
    if (user_id in reacted) == adding:
        return None
    if adding:
        in_use = sum(1 for users in target.reactions.values() if users)
        if not reacted and in_use >= timeline.MAX_DISTINCT_REACTIONS:
            raise errors.FailedPrecondition(
                f"A message has at most {timeline.MAX_DISTINCT_REACTIONS} different reactions",
                reason=errors.Reason.TOO_MANY_REACTIONS,
            )
        await connection.execute(_REACT, work.message_id, work.value, user_id)
        reacted.add(user_id)
    else:
        await connection.execute(_UNREACT, work.message_id, work.value, user_id)
        reacted.discard(user_id)
    return UpdateKind.REACTIONS
