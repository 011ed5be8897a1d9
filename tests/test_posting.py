"""The poster: repeated client_message_ids, and statements that stay fast however
the tables grow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.models import Role
from atomchat_server.domain.entities import Actor, MessageView
from atomchat_server.domain.posting import _EXISTING, MessagePoster
from devsupport import fresh_database

T = TypeVar("T")


def scans_of(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found.extend(scans_of(child))
    return found


async def explain_repeat_lookup(
    poster: MessagePoster, channel_id: int, user_id: int
) -> dict[str, Any]:
    """The plan the poster's own prepared repeat lookup would run with now."""
    connection = poster._committer._connection
    assert connection is not None
    name = await connection.fetchval(
        "SELECT name FROM pg_prepared_statements WHERE statement = $1", _EXISTING
    )
    assert name is not None
    (plan,) = json.loads(
        await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE {name}(ARRAY[{channel_id}]::bigint[],"
            f" ARRAY[{user_id}]::bigint[], ARRAY['k']::text[])"
        )
    )
    return cast(dict[str, Any], plan)


async def on_posters_loop(poster: MessagePoster, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` on the poster's own event loop, where its connection lives."""
    loop = poster._committer._loop
    assert loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))


@dataclass
class Posting:
    setup: asyncpg.Connection
    poster: MessagePoster
    actor: Actor
    channel_id: int

    async def post(self, content: str, key: str) -> MessageView:
        return await self.poster.post(
            actor=self.actor, channel_id=self.channel_id, content=content, client_message_id=key
        )

    async def prepared(self, statement: str) -> bool:
        """Whether the poster's connection has run (and so prepared) `statement`."""

        async def lookup() -> bool:
            connection = self.poster._committer._connection
            assert connection is not None
            return bool(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", statement
                )
            )

        return await on_posters_loop(self.poster, lookup())


@asynccontextmanager
async def posting(postgres_server_url: str) -> AsyncIterator[Posting]:
    """A poster on a fresh database with one user, member of one channel."""
    async with fresh_database(postgres_server_url) as url:
        setup = await asyncpg.connect(asyncpg_dsn(url))
        try:
            user_id = await setup.fetchval(
                "INSERT INTO users (username, username_key, hashed_password)"
                " VALUES ('poster', 'poster', 'x') RETURNING id"
            )
            channel_id = await setup.fetchval(
                "INSERT INTO channels (name, slug) VALUES ('c', 'c') RETURNING id"
            )
            await setup.execute(
                "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
                channel_id,
                user_id,
            )
            poster = MessagePoster(asyncpg_dsn(url), origin="test", on_commit=lambda _: None)
            poster.start()
            try:
                actor = Actor(user_id=user_id, username="poster", role=Role.USER)
                yield Posting(setup, poster, actor, channel_id)
            finally:
                await poster.close()
        finally:
            await setup.close()


async def test_a_new_key_is_inserted_without_looking_it_up(postgres_server_url: str) -> None:
    async with posting(postgres_server_url) as p:
        first = await p.post("one", "k1")
        second = await p.post("two", "k2")
        looked_up = await p.prepared(_EXISTING)
    assert (first.seq, second.seq) == (1, 2)
    assert not looked_up


async def test_a_stored_key_in_a_batch_is_answered_with_the_original_and_the_rest_stored(
    postgres_server_url: str,
) -> None:
    async with posting(postgres_server_url) as p:
        original = await p.post("one", "k1")
        # Queued in one go: one batch, unless the committer wakes in between.
        answers = await asyncio.gather(
            *(
                p.poster.submit(
                    actor=p.actor, channel_id=p.channel_id, content=content, client_message_id=key
                )
                for content, key in (("two", "k2"), ("again", "k1"), ("three", "k3"), ("x", "k2"))
            )
        )
        stored = await p.setup.fetch(
            "SELECT seq, content, client_message_id FROM messages ORDER BY seq"
        )
        last_seq = await p.setup.fetchval("SELECT last_seq FROM channels")
        looked_up = await p.prepared(_EXISTING)
    two, again, three, two_again = answers
    assert again == original
    assert two_again == two
    assert (two.seq, three.seq) == (2, 3)
    assert [tuple(row) for row in stored] == [
        (1, "one", "k1"),
        (2, "two", "k2"),
        (3, "three", "k3"),
    ]
    assert last_seq == 3
    assert looked_up


async def test_the_repeat_lookup_uses_the_index_after_the_table_has_grown(
    postgres_server_url: str,
) -> None:
    async with posting(postgres_server_url) as p:
        for number in range(8):
            await p.post("hi", f"k{number}")
        # More repeats than PostgreSQL plans one by one before it may settle on a
        # generic plan, while the table is still almost empty.
        for number in range(8):
            await p.post("hi", f"k{number}")
        await p.setup.execute(
            "INSERT INTO messages (channel_id, seq, sender_id, content, client_message_id)"
            " SELECT $1, 8 + g, $2, 'x', 'old' || g FROM generate_series(1, 50000) g",
            p.channel_id,
            p.actor.user_id,
        )
        await p.setup.execute("UPDATE channels SET last_seq = 50008 WHERE id = $1", p.channel_id)
        await p.post("hi", "old1")
        plan = await on_posters_loop(
            p.poster, explain_repeat_lookup(p.poster, p.channel_id, p.actor.user_id)
        )
    scans = scans_of(plan["Plan"])
    assert ("Seq Scan", "messages") not in scans, scans
