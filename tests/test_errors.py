"""How failures reach clients beyond the domain's own rules: the database
driver's failures, mapped once (db/errors.py), on every path that meets them."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from atomchat.v1 import chat_pb2
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from atomchat_server.app import App
from atomchat_server.db.engine import Database
from atomchat_server.db.errors import domain_error
from atomchat_server.domain import errors
from tests.chat_support import post
from tests.support import People, eventually, fails, sql


async def test_nul_in_content_or_client_message_id_is_invalid_argument(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await fails(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="nul \x00 inside")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await fails(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(
                channel_id=channel.id, content="ok", client_message_id="\x00"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_text_the_database_cannot_store_is_invalid_argument(database_url: str) -> None:
    """The safety net behind validation: PostgreSQL itself refusing a NUL."""
    database = Database(database_url)
    try:
        with pytest.raises(errors.InvalidArgument) as raised:
            async with database.transaction() as session:
                await session.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})
    finally:
        await database.dispose()
    assert raised.value.reason == errors.Reason.INVALID_TEXT
    assert isinstance(raised.value.__cause__, Exception)


async def test_a_database_nobody_listens_for_is_unavailable() -> None:
    database = Database("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(errors.Unavailable) as raised:
            async with database.transaction() as session:
                await session.execute(text("SELECT 1"))
        assert raised.value.reason == errors.Reason.DATABASE_UNAVAILABLE
        with pytest.raises(errors.Unavailable):
            await database.ping()
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=type,
)
def test_what_means_the_database_cannot_answer_now_is_unavailable(failure: Exception) -> None:
    assert isinstance(domain_error(failure), errors.Unavailable)


@pytest.mark.parametrize(
    "failure",
    [
        sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached, connection timed out"),
        sa_exc.OperationalError("SELECT 1", {}, Exception("the connection is closed")),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("cannot use a closed connection")),
    ],
    ids=type,
)
async def test_what_sqlalchemy_says_of_no_connection_is_unavailable_to_a_unit_of_work(
    database_url: str, failure: Exception
) -> None:
    """SQLAlchemy's own failures are mapped where its sessions are (db/engine.py), so
    that the poster's process, which speaks to asyncpg alone, need not load it."""
    database = Database(database_url)
    try:
        with pytest.raises(errors.Unavailable) as raised:
            async with database.transaction():
                raise failure
        assert raised.value.reason == errors.Reason.DATABASE_UNAVAILABLE
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.UndefinedTableError('relation "nothing" does not exist'),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        ValueError("a bug"),
    ],
    ids=type,
)
def test_other_failures_are_not_mapped(failure: Exception) -> None:
    assert domain_error(failure) is None


async def test_a_post_whose_connection_dies_mid_batch_is_unavailable_and_the_next_works(
    people: People, app: App, database_url: str
) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    holder = await asyncpg.connect(database_url)
    try:
        # Hold the channel's row: the poster's batch waits on it, mid-transaction.
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE", channel.id)
        pending = asyncio.ensure_future(post(owner, channel.id, "into the void"))

        async def poster_waits_for_the_lock() -> bool:
            return bool(
                await sql(
                    database_url,
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = 'atomchat-poster'"
                    " AND datname = current_database() AND wait_event_type = 'Lock'",
                )
            )

        await eventually(poster_waits_for_the_lock)
        await sql(
            database_url,
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = 'atomchat-poster' AND datname = current_database()",
        )
        failure = await fails(pending, grpc.StatusCode.UNAVAILABLE)
        assert failure.reason == errors.Reason.DATABASE_UNAVAILABLE
        await transaction.rollback()
    finally:
        await holder.close()
    stored = await post(owner, channel.id, "after the reconnect")
    assert stored.content == "after the reconnect"
    rows = await sql(database_url, "SELECT content FROM messages WHERE channel_id = $1", channel.id)
    assert [row["content"] for row in rows] == ["after the reconnect"]
