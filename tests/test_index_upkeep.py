"""The search indexes' pending lists are merged by a connection of their own, not
by a post's insert (db/index_upkeep.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from prometheus_client import REGISTRY

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.index_upkeep import PendingListMerger
from devsupport import fresh_database
from tests.chat_support import post
from tests.support import People, sql

GIN_INDEXES = ("ix_messages_search", "ix_messages_search_pairs")
WORDS = [f"слово{number}" for number in range(500)]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=14))


async def pending_pages(connection: asyncpg.Connection) -> dict[str, int]:
    """Each GIN index's pending pages, read without merging them."""
    await connection.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    rows = await connection.fetch(
        "SELECT name, (pgstatginindex(name::regclass)).pending_pages AS pages"
        " FROM unnest($1::text[]) AS name",
        list(GIN_INDEXES),
    )
    return {row["name"]: row["pages"] for row in rows}


class ObservedMerger(PendingListMerger):
    """Tells each merge's pages as it ends, or what it failed with."""

    def __init__(self, dsn: str, *, interval: float) -> None:
        super().__init__(dsn, interval=interval)
        self.merged: asyncio.Queue[int | Exception] = asyncio.Queue()

    async def merge(self) -> int:
        try:
            pages = await super().merge()
        except Exception as exc:
            self.merged.put_nowait(exc)
            raise
        self.merged.put_nowait(pages)
        return pages


def merge_count() -> float:
    """Merges this process made, as its metrics tell."""
    count = REGISTRY.get_sample_value("atomchat_index_merge_seconds_count")
    assert count is not None
    return count


@dataclass
class Database:
    dsn: str
    connection: asyncpg.Connection


@pytest.fixture
async def database(postgres_server_url: str) -> AsyncIterator[Database]:
    """A fresh migrated database with one user and one channel, and a connection to it."""
    async with fresh_database(postgres_server_url) as url:
        dsn = asyncpg_dsn(url)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO users (id, username, username_key, hashed_password)"
                " VALUES (1, 'writer', 'writer', 'x');"
                "INSERT INTO channels (id, name, slug) VALUES (1, 'words', 'words')"
            )
            yield Database(dsn, connection)
        finally:
            await connection.close()


async def insert_sentences(connection: asyncpg.Connection, first_seq: int, count: int) -> None:
    rng = random.Random(first_seq)
    await connection.execute(
        "INSERT INTO messages (channel_id, seq, sender_id, content)"
        " SELECT 1, s, 1, body FROM unnest($1::bigint[], $2::text[]) AS v(s, body)",
        list(range(first_seq, first_seq + count)),
        [sentence(rng) for _ in range(count)],
    )


async def test_a_merge_leaves_no_pending_page_in_either_search_index(
    database: Database,
) -> None:
    await insert_sentences(database.connection, 1, 400)
    before = await pending_pages(database.connection)
    assert all(pages > 0 for pages in before.values()), before
    merger = PendingListMerger(database.dsn)
    try:
        merged = await merger.merge()
    finally:
        await merger.close()
    assert merged == sum(before.values())
    assert await pending_pages(database.connection) == dict.fromkeys(GIN_INDEXES, 0)


async def test_noted_writes_are_merged_and_a_quiet_merger_merges_nothing(
    database: Database,
) -> None:
    merges_before = merge_count()
    merger = ObservedMerger(database.dsn, interval=0.0)
    merger.start()
    try:
        for merges, first_seq in enumerate((1, 201), start=1):
            await insert_sentences(database.connection, first_seq, 200)
            merger.note_writes()
            async with asyncio.timeout(10):
                await merger.merged.get()
            assert merger.merges == merges
            assert await pending_pages(database.connection) == dict.fromkeys(GIN_INDEXES, 0)
        assert merger.pages > 0
        assert merge_count() == merges_before + 2
    finally:
        await merger.close()
    assert merger.merges == 2
    assert merger.merged.empty()


async def test_a_server_that_posted_merges_the_pending_lists_itself(
    people: People, database_url: str
) -> None:
    """Fails without the merger: the pending list then only empties once an
    insert crosses gin_pending_list_limit (4 MB) or autovacuum comes by."""
    owner = await people.user()
    channel = await people.channel(owner)
    rng = random.Random(7)
    for _ in range(150):
        await post(owner, channel.id, sentence(rng))
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await until_pages_are_merged(connection)
    finally:
        await connection.close()
    stored = await sql(
        database_url, "SELECT count(*) FROM messages WHERE channel_id = $1", channel.id
    )
    assert stored[0][0] == 150


async def until_pages_are_merged(connection: asyncpg.Connection) -> None:
    pages = await pending_pages(connection)
    async with asyncio.timeout(10):
        while any(pages.values()):
            await asyncio.sleep(0.05)
            pages = await pending_pages(connection)


async def test_a_merger_whose_connection_was_ended_merges_on_a_new_one(
    database: Database,
) -> None:
    merger = ObservedMerger(database.dsn, interval=0.0)
    merger.start()
    try:
        await insert_sentences(database.connection, 1, 200)
        merger.note_writes()
        async with asyncio.timeout(10):
            await merger.merged.get()
        ended = await database.connection.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'atomchat-index-upkeep' AND datname = current_database()"
        )
        assert ended
        await insert_sentences(database.connection, 201, 200)
        for _ in range(2):
            merger.note_writes()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await merger.merged.get()
        assert await pending_pages(database.connection) == dict.fromkeys(GIN_INDEXES, 0)
    finally:
        await merger.close()


class FailingOnce(ObservedMerger):
    """Its first merge fails as asyncpg does on a connection left mid-operation."""

    def __init__(self, dsn: str, *, interval: float) -> None:
        super().__init__(dsn, interval=interval)
        self.failed = asyncio.Event()

    async def merge(self) -> int:
        if not self.failed.is_set():
            self.failed.set()
            raise asyncpg.exceptions.InternalClientError("another operation is in progress")
        return await super().merge()


async def test_a_merge_that_fails_leaves_the_merger_merging(database: Database) -> None:
    """A killed database once left the merger's connection mid-operation; the error it
    raised ended the merger's task, and with it every later merge."""
    merger = FailingOnce(database.dsn, interval=0.0)
    merger.start()
    try:
        merger.note_writes()
        await insert_sentences(database.connection, 1, 200)
        async with asyncio.timeout(10):
            await merger.failed.wait()
        merger.note_writes()
        async with asyncio.timeout(10):
            await merger.merged.get()
        assert await pending_pages(database.connection) == dict.fromkeys(GIN_INDEXES, 0)
    finally:
        await merger.close()


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


async def test_a_role_that_does_not_own_the_indexes_leaves_the_merging_to_inserts(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"upkeep_{uuid.uuid4().hex[:12]}"
    await database.connection.execute(f"CREATE ROLE {role} LOGIN")
    try:
        merger = ObservedMerger(database.dsn.replace("postgres@", f"{role}@", 1), interval=0.0)
        merger.start()
        try:
            merger.note_writes()
            async with asyncio.timeout(10):
                failure = await merger.merged.get()
            assert isinstance(failure, asyncpg.InsufficientPrivilegeError)
            assert "the search indexes are merged by inserts only" in caplog.text
        finally:
            await merger.close()
    finally:
        await database.connection.execute(f"DROP ROLE {role}")
