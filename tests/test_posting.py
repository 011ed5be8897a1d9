"""The poster's statements stay fast however the tables grow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.models import Role
from atomchat_server.domain.entities import Actor
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


async def test_the_repeat_lookup_uses_the_index_after_the_table_has_grown(
    postgres_server_url: str,
) -> None:
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
                # More posts than PostgreSQL plans one by one before it may settle
                # on a generic plan, while the table is still empty.
                for number in range(8):
                    await poster.post(
                        actor=actor,
                        channel_id=channel_id,
                        content="hi",
                        client_message_id=f"k{number}",
                    )
                await setup.execute(
                    "INSERT INTO messages (channel_id, seq, sender_id, content, client_message_id)"
                    " SELECT $1, 8 + g, $2, 'x', 'old' || g FROM generate_series(1, 50000) g",
                    channel_id,
                    user_id,
                )
                await setup.execute(
                    "UPDATE channels SET last_seq = 50008 WHERE id = $1", channel_id
                )
                await poster.post(
                    actor=actor, channel_id=channel_id, content="hi", client_message_id="new"
                )
                plan = await on_posters_loop(
                    poster, explain_repeat_lookup(poster, channel_id, user_id)
                )
            finally:
                await poster.close()
        finally:
            await setup.close()
    scans = scans_of(plan["Plan"])
    assert ("Seq Scan", "messages") not in scans, scans
