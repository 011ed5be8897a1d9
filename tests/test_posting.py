"""The poster's statements stay fast however the tables grow, and a repeated
client_message_id is looked up only when it is one."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.domain import inbox, timeline_store
from atomchat_server.domain.entities import Actor, MessageView
from atomchat_server.domain.kinds import Role
from atomchat_server.domain.posting import (
    _MENTIONABLE,
    _REPLY_TARGETS,
    _WRITERS,
    MAX_BATCH,
    Change,
    Outcome,
    TimelineWriter,
    Work,
    new_change,
    new_post,
)
from devsupport import fresh_database
from tests.support import one_member_channel


def scans_of(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found.extend(scans_of(child))
    return found


class Writer:
    """The poster's TimelineWriter, run on this loop as the poster's process runs
    it, with a future for each write's answer."""

    def __init__(self, dsn: str) -> None:
        self.timeline = TimelineWriter(
            dsn, origin="test", on_commit=lambda _: None, reply=self._reply
        )
        self._futures: dict[int, asyncio.Future[MessageView]] = {}
        self._tickets = itertools.count(1)

    def _reply(self, ticket: int, outcome: Outcome) -> None:
        future = self._futures.pop(ticket)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _submit(self, work: Work) -> asyncio.Future[MessageView]:
        future = asyncio.get_running_loop().create_future()
        self._futures[work.ticket] = future
        self.timeline.submit(work)
        return future

    def submit(self, **post: Any) -> asyncio.Future[MessageView]:
        return self._submit(new_post(next(self._tickets), **post))

    async def change(self, **change: Any) -> MessageView:
        return await self._submit(new_change(next(self._tickets), **change))


async def prepared(poster: Writer, statement: str) -> tuple[asyncpg.Connection, str] | None:
    """The connection of the poster's lanes that prepared this statement, and its name."""
    for lane in poster.timeline._committer._lanes:
        connection = lane.connection
        if connection is None:
            continue
        name = await connection.fetchval(
            "SELECT name FROM pg_prepared_statements WHERE statement = $1", statement
        )
        if name is not None:
            return connection, cast(str, name)
    return None


async def explain(poster: Writer, statement: str, arguments: str) -> dict[str, Any]:
    """The plan the poster's own prepared statement would run with now."""
    found = await prepared(poster, statement)
    assert found is not None
    connection, name = found
    (plan,) = json.loads(
        await connection.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({arguments})")
    )
    return cast(dict[str, Any], plan)


def _bigints(values: list[int]) -> str:
    return "'{" + ",".join(str(value) for value in values) + "}'::bigint[]"


@dataclass
class Posting:
    setup: asyncpg.Connection
    poster: Writer
    actor: Actor
    channel_id: int


@asynccontextmanager
async def posting(postgres_server_url: str) -> AsyncIterator[Posting]:
    """A fresh database with one member of one channel, and a poster started on it."""
    async with fresh_database(postgres_server_url) as url:
        setup = await asyncpg.connect(asyncpg_dsn(url))
        try:
            user_id, channel_id = await one_member_channel(setup)
            poster = Writer(asyncpg_dsn(url))
            poster.timeline.start()
            try:
                actor = Actor(user_id=user_id, username="poster", role=Role.USER)
                yield Posting(setup, poster, actor, channel_id)
            finally:
                await poster.timeline.close()
        finally:
            await setup.close()


async def test_the_posters_statements_use_the_indexes_after_the_tables_have_grown(
    postgres_server_url: str,
) -> None:
    """The poster's statements, prepared and run while the tables were nearly
    empty, still read messages and inboxes through their indexes once those
    have grown (before any ANALYZE)."""
    async with posting(postgres_server_url) as p:
        other = await p.setup.fetchval(
            "INSERT INTO users (username, username_key, hashed_password)"
            " VALUES ('other', 'other', 'x') RETURNING id"
        )
        await p.setup.execute(
            "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
            p.channel_id,
            other,
        )
        first = await p.poster.submit(actor=p.actor, channel_id=p.channel_id, content="first")
        # More posts than PostgreSQL plans one by one before it may settle on a
        # generic plan, each a reply that mentions someone: every statement of
        # a post is prepared and run that often while the tables are nearly empty.
        for number in range(8):
            await p.poster.submit(
                actor=p.actor,
                channel_id=p.channel_id,
                content="hi @other",
                client_message_id=f"k{number}",
                reply_to_id=first.id,
            )
        await p.setup.execute(
            "INSERT INTO messages (channel_id, seq, sender_id, content, client_message_id)"
            " SELECT $1, 9 + g, $2, 'x', 'old' || g FROM generate_series(1, 50000) g",
            p.channel_id,
            p.actor.user_id,
        )
        await p.setup.execute(
            "INSERT INTO inbox_events (user_id, id, kind, channel_id, message_id)"
            " SELECT $1, 100 + g, 'mention', $2, $3 FROM generate_series(1, 50000) g",
            other,
            p.channel_id,
            first.id,
        )
        await p.setup.execute("UPDATE users SET inbox_last_id = 50100 WHERE id = $1", other)
        await p.setup.execute("UPDATE channels SET last_seq = 50009 WHERE id = $1", p.channel_id)
        await p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="hi", client_message_id="new"
        )
        await p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="hi", client_message_id="k0"
        )
        users = _bigints([p.actor.user_id, other])
        channels = _bigints([p.channel_id])
        statements = [
            (timeline_store._BY_ID, _bigints([first.id])),
            (_REPLY_TARGETS, _bigints([first.id])),
            (_MENTIONABLE, f"'{{other}}'::text[], {channels}"),
            (inbox._LOCK_USERS, users),
            (inbox._TRIM, f"{users}, {inbox.KEEP}"),
        ]
        # The writers' check with one key, and with as many as a full batch has.
        for keys in (1, MAX_BATCH):
            statements.append(
                (
                    _WRITERS,
                    f"{users}, {channels},"
                    f" {_bigints([p.channel_id] * keys)}, {_bigints([p.actor.user_id] * keys)},"
                    " '{" + ",".join(f"k{number}" for number in range(keys)) + "}'::text[],"
                    f" {keys}",
                )
            )
        plans = [
            (statement, await explain(p.poster, statement, arguments))
            for statement, arguments in statements
        ]
    for statement, plan in plans:
        scans = scans_of(plan["Plan"])
        assert ("Seq Scan", "messages") not in scans, (statement, scans)
        assert ("Seq Scan", "inbox_events") not in scans, (statement, scans)


async def test_the_writers_check_is_one_row_whatever_the_number_of_writers(
    postgres_server_url: str,
) -> None:
    """The batch-wide arrays (stored keys, new ids) come once, not once per writer:
    200 writers with 2,000 keys made 200 copies of 2,000 slots."""
    async with posting(postgres_server_url) as p:
        writers = [p.actor.user_id]
        for number in range(3):
            writers.append(
                await p.setup.fetchval(
                    "INSERT INTO users (username, username_key, hashed_password)"
                    " VALUES ($1, $2, 'x') RETURNING id",
                    f"writer{number}",
                    f"writer{number}",
                )
            )
            await p.setup.execute(
                "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
                p.channel_id,
                writers[-1],
            )
        keys = 50
        rows = await p.setup.fetch(
            _WRITERS,
            writers,
            [p.channel_id],
            [p.channel_id] * keys,
            [p.actor.user_id] * keys,
            [f"k{number}" for number in range(keys)],
            keys,
        )
    assert len(rows) == 1
    (row,) = rows
    assert sorted(row["active"]) == sorted(writers)
    assert sorted(row["member_users"]) == sorted(writers)
    assert list(row["channel_ids"]) == [p.channel_id]
    assert len(row["new_ids"]) == keys
    assert row["new_ids"] == sorted(row["new_ids"])
    assert row["stored"] == [None] * keys


async def test_a_new_key_is_not_looked_up_and_a_repeat_gets_the_original(
    postgres_server_url: str,
) -> None:
    async with posting(postgres_server_url) as p:
        first = await p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="one", client_message_id="a"
        )
        await p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="two", client_message_id="b"
        )
        read_before = await prepared(p.poster, timeline_store._BY_ID)
        again = await p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="one again", client_message_id="a"
        )
        read_after = await prepared(p.poster, timeline_store._BY_ID)
        stored = await p.setup.fetchval(
            "SELECT count(*) FROM messages WHERE channel_id = $1", p.channel_id
        )
    # No original was read for the new keys; the repeat's was.
    assert read_before is None
    assert read_after is not None
    assert (again.id, again.seq, again.content) == (first.id, first.seq, "one")
    assert stored == 2


async def wait_until_blocked(setup: asyncpg.Connection) -> None:
    """Until the poster's transaction waits for a lock another transaction holds."""
    for _ in range(500):
        if await setup.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'atomchat-poster' AND wait_event_type = 'Lock'"
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the poster never waited for the channel's lock")


async def test_a_key_repeated_after_a_change_in_the_same_batch_gets_the_original(
    postgres_server_url: str,
) -> None:
    """The key of a post earlier in the batch counts as stored for a later run of posts."""
    async with posting(postgres_server_url) as p:
        edited = await p.poster.submit(actor=p.actor, channel_id=p.channel_id, content="edit me")
        blocker = p.setup.transaction()
        await blocker.start()
        await p.setup.execute("SELECT FROM channels WHERE id = $1 FOR UPDATE", p.channel_id)
        ahead = p.poster.submit(actor=p.actor, channel_id=p.channel_id, content="ahead")
        await wait_until_blocked(p.setup)
        # Queued behind the blocked batch, these four are written as one batch:
        # a run of posts, a change, and a run of posts again.
        keyed = p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="keyed", client_message_id="k"
        )
        edit = asyncio.ensure_future(
            p.poster.change(
                actor=p.actor,
                channel_id=p.channel_id,
                message_id=edited.id,
                change=Change.EDIT,
                value="edited",
            )
        )
        await asyncio.sleep(0)
        repeat = p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="keyed again", client_message_id="k"
        )
        new = p.poster.submit(
            actor=p.actor, channel_id=p.channel_id, content="new", client_message_id="n"
        )
        await blocker.commit()
        await ahead
        keyed_message, _, repeat_message, new_message = await asyncio.gather(
            keyed, edit, repeat, new
        )
        rows = await p.setup.fetch(
            "SELECT seq, client_message_id FROM messages WHERE channel_id = $1 ORDER BY seq",
            p.channel_id,
        )
        last_seq = await p.setup.fetchval(
            "SELECT last_seq FROM channels WHERE id = $1", p.channel_id
        )
    assert (repeat_message.id, repeat_message.content) == (keyed_message.id, "keyed")
    # One transaction: the batch was not split up after a failure.
    assert new_message.created_at == keyed_message.created_at
    assert [row["client_message_id"] for row in rows] == [None, None, "k", "n"]
    # The edit took a seq of its own, between the two posts.
    assert [row["seq"] for row in rows] == [1, 2, 3, 5]
    assert last_seq == 5
