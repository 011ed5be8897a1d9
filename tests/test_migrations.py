"""Alembic migrations: an empty database up to head and back, and models that match them."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from atomchat_server.db.engine import Database, sqlalchemy_url
from atomchat_server.db.migrate import downgrade, upgrade
from atomchat_server.db.models import Base
from atomchat_server.seeding import seed
from devsupport import admin_dsn, child_environment, fresh_database, run_atomchat
from tests.support import sql

TABLES = {
    "users",
    "channels",
    "channel_join_requests",
    "channel_members",
    "messages",
    "message_updates",
    "message_reactions",
    "inbox_events",
}


async def public_tables(url: str) -> set[str]:
    rows = await sql(
        url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    return {row["tablename"] for row in rows}


async def public_objects(url: str) -> list[str]:
    """Every relation, sequence, type and function of our own in the public schema."""
    rows = await sql(
        url,
        """
        SELECT 'relation ' || relname AS name FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relname <> 'alembic_version'
           AND relname <> 'alembic_version_pkc'
        UNION ALL
        SELECT 'type ' || typname FROM pg_type
         WHERE typnamespace = 'public'::regnamespace AND typname NOT LIKE '%alembic_version'
        UNION ALL
        SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        """,
    )
    return sorted(row["name"] for row in rows)


async def run_script(url: str, script: str) -> None:
    connection = await asyncpg.connect(admin_dsn(url))
    try:
        await connection.execute(script)
    finally:
        await connection.close()


async def migrated_with_data(url: str) -> None:
    """Two users (ids 1, 2), a channel (1) with its owner, a pending request and a message."""
    await run_script(
        url,
        """
        INSERT INTO users (username, username_key, hashed_password)
        VALUES ('alice', 'alice', 'x'), ('bob', 'bob', 'x');
        INSERT INTO channels (name, slug) VALUES ('General', 'general');
        INSERT INTO channel_members (channel_id, user_id, is_owner) VALUES (1, 1, true);
        INSERT INTO channel_join_requests (channel_id, user_id) VALUES (1, 2);
        INSERT INTO messages (channel_id, seq, sender_id, content) VALUES (1, 1, 1, 'hi');
        """,
    )


@pytest.fixture(scope="module")
async def shared_database(postgres_server_url: str) -> Any:
    """Migrated, with a little data, for tests that change nothing."""
    async with fresh_database(postgres_server_url) as url:
        await migrated_with_data(url)
        yield url


@pytest.fixture
async def database(postgres_server_url: str) -> Any:
    """Migrated, with a little data, for a test that changes it."""
    async with fresh_database(postgres_server_url) as url:
        await migrated_with_data(url)
        yield url


async def test_upgrade_to_head_creates_every_table(shared_database: str) -> None:
    assert await public_tables(shared_database) == TABLES | {"alembic_version"}
    version = await sql(shared_database, "SELECT version_num FROM alembic_version")
    assert len(version) == 1


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        pytest.param(
            "INSERT INTO users (username, username_key, hashed_password)"
            " VALUES ('alice', 'alice', 'y')",
            "uq_users_username",
            id="unique-username",
        ),
        pytest.param(
            "INSERT INTO channel_join_requests (channel_id, user_id) VALUES (1, 2)",
            "uq_channel_join_requests_pending",
            id="one-pending-request-per-channel-and-user",
        ),
        pytest.param(
            "INSERT INTO messages (channel_id, seq, sender_id, content) VALUES (1, 1, 2, 'again')",
            "uq_messages_channel_id_seq",
            id="unique-channel-seq",
        ),
        pytest.param(
            "INSERT INTO channel_members (channel_id, user_id, is_owner) VALUES (1, 2, true)",
            "uq_channel_members_one_owner",
            id="one-owner-per-channel",
        ),
        pytest.param(
            "INSERT INTO channel_members (channel_id, user_id) VALUES (1, 1)",
            "uq_channel_members_channel_id_user_id",
            id="unique-channel-member",
        ),
        pytest.param(
            "INSERT INTO channels (name, slug) VALUES ('General', 'general-2')",
            "uq_channels_name_active",
            id="unique-active-channel-name",
        ),
        pytest.param(
            "INSERT INTO channels (name, slug) VALUES ('General 2', 'general')",
            "uq_channels_slug_active",
            id="unique-active-channel-slug",
        ),
    ],
)
async def test_uniqueness_rules_are_database_constraints(
    shared_database: str, statement: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await sql(shared_database, statement)
    assert raised.value.constraint_name == constraint


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        pytest.param(
            "UPDATE users SET role = 'admin' WHERE id = 1", "ck_users_role", id="known-roles"
        ),
        pytest.param(
            "UPDATE channels SET member_count = -1",
            "ck_channels_member_count_not_negative",
            id="member-count-not-negative",
        ),
        pytest.param(
            "UPDATE channel_join_requests SET status = 'accepted'",
            "ck_channel_join_requests_decided_iff_not_pending",
            id="a-decided-request-has-a-decision-time",
        ),
        pytest.param(
            "UPDATE messages SET content = ''", "ck_messages_content", id="content-length"
        ),
    ],
)
async def test_value_rules_are_database_constraints(
    shared_database: str, statement: str, constraint: str
) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as raised:
        await sql(shared_database, statement)
    assert raised.value.constraint_name == constraint


async def test_a_second_pending_request_is_allowed_once_the_first_is_decided(
    database: str,
) -> None:
    await sql(
        database,
        "UPDATE channel_join_requests SET status = 'rejected', decided_at = now(), decided_by = 1",
    )
    await sql(database, "INSERT INTO channel_join_requests (channel_id, user_id) VALUES (1, 2)")


async def test_a_deleted_channel_frees_its_name_and_slug(database: str) -> None:
    await sql(database, "UPDATE channels SET is_active = false WHERE id = 1")
    await sql(database, "INSERT INTO channels (name, slug) VALUES ('General', 'general')")


async def test_timestamps_are_timezone_aware(shared_database: str) -> None:
    rows = await sql(
        shared_database,
        """
        SELECT table_name, column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'public'
           AND (column_name LIKE '%\\_at' OR column_name = 'tokens_valid_after')
        """,
    )
    assert len(rows) == 12
    assert {row["data_type"] for row in rows} == {"timestamp with time zone"}


async def test_downgrade_to_base_removes_everything_and_upgrade_works_again(
    postgres_server_url: str,
) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        before = await public_objects(url)
        await upgrade(url)
        await migrated_with_data(url)

        await downgrade(url, "base")
        assert await public_tables(url) <= {"alembic_version"}
        assert await public_objects(url) == before
        assert await sql(url, "SELECT * FROM alembic_version") == []

        await upgrade(url)
        assert await public_tables(url) == TABLES | {"alembic_version"}
        await migrated_with_data(url)


async def test_upgrading_twice_changes_nothing(database: str) -> None:
    await upgrade(database)
    rows = await sql(database, "SELECT count(*) AS n FROM users")
    assert rows[0]["n"] == 2


async def test_the_models_match_the_migrations(shared_database: str) -> None:
    engine = create_async_engine(sqlalchemy_url(shared_database))

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert found == []


async def test_unread_and_mention_counts_each_read_one_index_only(shared_database: str) -> None:
    rows = await sql(
        shared_database,
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN"
        " ('uq_messages_channel_id_seq', 'ix_messages_mentions') ORDER BY indexname",
    )
    assert [(row["indexname"], row["indexdef"].rpartition(" USING ")[2]) for row in rows] == [
        (
            "ix_messages_mentions",
            "btree (channel_id, seq) INCLUDE (sender_id, deleted_at, mention_user_ids)"
            " WHERE (mention_user_ids <> '{}'::bigint[])",
        ),
        ("uq_messages_channel_id_seq", "btree (channel_id, seq) INCLUDE (sender_id, deleted_at)"),
    ]


async def test_join_requests_are_indexed_by_channel_and_by_requester(
    shared_database: str,
) -> None:
    """ListJoinRequests and ListMyJoinRequests each read one index range in id order."""
    rows = await sql(
        shared_database,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'channel_join_requests'"
        " AND indexname LIKE 'ix_%' ORDER BY indexname",
    )
    assert [(row["indexname"], row["indexdef"].rpartition(" USING ")[2]) for row in rows] == [
        ("ix_channel_join_requests_channel_status", "btree (channel_id, status, id)"),
        ("ix_channel_join_requests_user_status", "btree (user_id, status, id)"),
    ]


async def test_atomchat_migrate_brings_an_empty_database_to_head(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        result = await run_atomchat("migrate", env=child_environment(DATABASE_URL=url))
        assert result.returncode == 0, result.output
        assert "database schema is up to date" in result.output
        assert "setup plugin" not in result.output, "alembic's start-up chatter is not news"
        assert await public_tables(url) == TABLES | {"alembic_version"}


async def test_the_timeline_revision_upgrades_a_populated_database_and_downgrades_cleanly(
    postgres_server_url: str,
) -> None:
    """The seed plus 10,000 messages, at the revision before the timeline."""
    async with fresh_database(postgres_server_url, migrated=False) as url:
        await upgrade(url, "0002")
        database = Database(url)
        try:
            await seed(database)
        finally:
            await database.dispose()
        await sql(
            url,
            "INSERT INTO messages (channel_id, seq, sender_id, content)"
            " SELECT 1, 4 + n, 4, 'программисты пишут код номер ' || n"
            " FROM generate_series(1, 10000) AS n",
        )
        await sql(url, "UPDATE channels SET last_seq = 10004 WHERE id = 1")

        await upgrade(url)
        found = await sql(
            url,
            "SELECT count(*) AS n FROM messages"
            " WHERE search @@ websearch_to_tsquery('russian', 'программистов')",
        )
        assert found[0]["n"] == 10000
        rows = await sql(
            url,
            "SELECT count(*) AS n, bool_and(mention_user_ids = '{}') AS plain,"
            " bool_and(deleted_at IS NULL AND edited_at IS NULL) AS untouched FROM messages",
        )
        assert (rows[0]["n"], rows[0]["plain"], rows[0]["untouched"]) == (10008, True, True)
        await sql(
            url,
            "UPDATE messages SET content = '', deleted_at = now(), deleted_by = 1 WHERE seq = 5",
        )

        await downgrade(url, "0002")
        kept = await sql(url, "SELECT count(*) AS n FROM messages")
        assert kept[0]["n"] == 10008
        tombstone = await sql(url, "SELECT content FROM messages WHERE channel_id = 1 AND seq = 5")
        assert tombstone[0]["content"] == "[deleted]"
        await upgrade(url)
        assert await public_tables(url) == TABLES | {"alembic_version"}


async def test_the_word_pairs_revision_indexes_a_populated_database_and_downgrades_cleanly(
    postgres_server_url: str,
) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        await upgrade(url, "0006")
        await migrated_with_data(url)
        await sql(
            url,
            "INSERT INTO messages (channel_id, seq, sender_id, content)"
            " SELECT 1, 1 + n, 1,"
            " CASE WHEN n % 2 = 0 THEN 'we run tests ' ELSE 'tests run ' END || n"
            " FROM generate_series(1, 5000) AS n",
        )

        await upgrade(url)
        indexes = await sql(
            url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_search_pairs'"
        )
        assert indexes[0]["indexdef"].endswith("USING gin (search_word_pairs(search))")
        found = await sql(
            url,
            "SELECT count(*) AS n FROM messages WHERE search_word_pairs(search) @@ $1::tsquery",
            "'run test'",
        )
        assert found[0]["n"] == 2500
        alone = await sql(url, "SELECT search_word_pairs(to_tsvector('russian', 'hi')) AS pairs")
        assert alone[0]["pairs"] == ""

        await downgrade(url, "0006")
        gone = await sql(
            url,
            "SELECT (SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_messages_search_pairs')"
            " + (SELECT count(*) FROM pg_proc WHERE proname = 'search_word_pairs') AS n",
        )
        assert gone[0]["n"] == 0
        await upgrade(url)
        assert await public_tables(url) == TABLES | {"alembic_version"}
