"""The demo data (SPEC §5), read back through the API, and seeding's idempotency.

The session database is seeded by conftest and other tests read it: tests
here only read it. Tests that seed do so on a database of their own.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from atomchat.v1 import channels_pb2, chat_pb2, join_requests_pb2, resources_pb2, users_pb2

from atomchat_server import seeding
from atomchat_server.auth.passwords import hash_now
from atomchat_server.db.engine import Database
from atomchat_server.seeding import SeedError, seed
from devsupport import child_environment, fresh_database, run_atomchat
from tests.support import People, Person, all_pages, sql

SEEDED_USERS = [
    (1, "moderator", resources_pb2.ROLE_MODERATOR),
    (2, "programmer_creator", resources_pb2.ROLE_USER),
    (3, "designer_creator", resources_pb2.ROLE_USER),
    (4, "user_program", resources_pb2.ROLE_USER),
    (5, "user_design", resources_pb2.ROLE_USER),
    (6, "user1", resources_pb2.ROLE_USER),
    (7, "user2", resources_pb2.ROLE_USER),
]
PROGRAMMERS_MESSAGES = [
    (1, "programmer_creator", "Привет всем, я создал этот канал!"),
    (2, "programmer_creator", "Каковы ваши ожидания от этого канала?"),
    (3, "user_program", "Спасибо за возможность присоединиться к каналу!"),
    (4, "user_program", "Я уверен, что мы тут найдем много интересного!"),
]
DESIGNERS_MESSAGES = [
    (1, "moderator", "Добро пожаловать в канал дизайнеров!"),
    (2, "moderator", "Какие идеи у нас есть для улучшения дизайна?"),
    (3, "user_design", "Я рад быть частью этого канала!"),
    (4, "user_design", "Мне очень интересно поработать с вами!"),
]
TABLES = ("users", "channels", "channel_members", "channel_join_requests", "messages")
SEEDED = "seeded 7 users (password '1234'), 2 channels, 1 join request and 8 messages"
NOTHING_CHANGED = "seed data already present; nothing changed"


async def oldest_messages(reader: Person, channel_id: int, count: int) -> list[Any]:
    """The first `count` messages of a channel (ListMessages pages newest first)."""

    async def fetch(token: str) -> Any:
        return await reader.api.chat.ListMessages(
            chat_pb2.ListMessagesRequest(channel_id=channel_id, page_size=200, page_token=token)
        )

    newest_first, _ = await all_pages(fetch, "messages")
    return list(reversed(newest_first))[:count]


async def row_counts(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TABLES:
        rows = await sql(url, f"SELECT count(*) AS n FROM {table}")  # noqa: S608
        counts[table] = int(rows[0]["n"])
    return counts


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        rows = await sql(url, f"SELECT * FROM {table} ORDER BY id")  # noqa: S608
        tables[table] = [tuple(row) for row in rows]
    return tables


async def seed_once(url: str) -> str:
    database = Database(url)
    try:
        return (await seed(database)).describe()
    finally:
        await database.dispose()


# What the seed put in the session database


@pytest.mark.parametrize(("user_id", "username", "role"), SEEDED_USERS)
async def test_a_seeded_user_logs_in_with_password_1234(
    people: People, user_id: int, username: str, role: int
) -> None:
    person = await people.login(username, "1234")
    me = await person.api.users.GetMe(users_pb2.GetMeRequest())
    assert (me.id, me.username, me.role, me.is_active) == (user_id, username, role, True)


async def test_the_programmers_channel_is_seeded(people: People) -> None:
    viewer = await people.login("user_program", "1234")  # a member sees the members
    found = await viewer.api.channels.GetChannel(
        channels_pb2.GetChannelRequest(slug="programmisty")
    )
    channel = found.channel
    assert (channel.id, channel.name, channel.slug, channel.description) == (
        1,
        "Программисты",
        "programmisty",
        "Канал для программистов",
    )
    assert (channel.owner_id, channel.member_count, channel.is_active) == (2, 2, True)
    assert (found.owner.id, found.owner.username) == (2, "programmer_creator")
    assert [(m.user_id, m.username, m.is_owner) for m in found.members] == [
        (2, "programmer_creator", True),
        (4, "user_program", False),
    ]


async def test_the_designers_channel_is_seeded(people: People) -> None:
    viewer = await people.login("user_design", "1234")  # a member sees the members
    found = await viewer.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug="dizayneri"))
    channel = found.channel
    assert (channel.id, channel.name, channel.slug, channel.description) == (
        2,
        "Дизайнеры",
        "dizayneri",
        "Канал для дизайнеров",
    )
    assert (channel.owner_id, channel.member_count, channel.is_active) == (3, 2, True)
    assert (found.owner.id, found.owner.username) == (3, "designer_creator")
    assert [(m.user_id, m.username, m.is_owner) for m in found.members] == [
        (3, "designer_creator", True),
        (5, "user_design", False),
    ]


async def test_seeded_channels_are_listed_first(people: People) -> None:
    viewer = await people.user()
    page = await viewer.api.channels.ListChannels(channels_pb2.ListChannelsRequest(page_size=2))
    assert [(c.id, c.slug) for c in page.channels] == [(1, "programmisty"), (2, "dizayneri")]


async def test_seeded_owners_see_their_channel_in_my_channels(people: People) -> None:
    for username, channel_id in (
        ("programmer_creator", 1),
        ("user_program", 1),
        ("designer_creator", 2),
        ("user_design", 2),
    ):
        person = await people.login(username, "1234")
        mine = await person.api.channels.ListMyChannels(channels_pb2.ListMyChannelsRequest())
        assert [c.id for c in mine.channels] == [channel_id], username


async def test_user1s_request_to_join_the_programmers_is_pending(people: People) -> None:
    user1 = await people.login("user1", "1234")
    request = await user1.api.join_requests.GetJoinRequest(
        join_requests_pb2.GetJoinRequestRequest(request_id=1)
    )
    assert (request.id, request.channel_id, request.user_id, request.status) == (
        1,
        1,
        6,
        resources_pb2.JOIN_REQUEST_STATUS_PENDING,
    )
    owner = await people.login("programmer_creator", "1234")
    pending = await owner.api.join_requests.ListJoinRequests(
        join_requests_pb2.ListJoinRequestsRequest(channel_id=1)
    )
    assert [(r.id, r.user_id) for r in pending.join_requests][:1] == [(1, 6)]


@pytest.mark.parametrize(
    ("channel_id", "expected"),
    [
        pytest.param(1, PROGRAMMERS_MESSAGES, id="programmisty"),
        pytest.param(2, DESIGNERS_MESSAGES, id="dizayneri"),
    ],
)
async def test_the_seeded_messages_come_in_order_with_seq_1_to_4(
    people: People, channel_id: int, expected: list[tuple[int, str, str]]
) -> None:
    moderator = await people.login("moderator", "1234")
    messages = await oldest_messages(moderator, channel_id, 4)
    assert [(m.seq, m.sender_username, m.content) for m in messages] == expected
    assert all(m.channel_id == channel_id for m in messages)
    times = [m.created_at.ToDatetime() for m in messages]
    assert times == sorted(times)


# Seeding a database of our own


async def test_seeding_an_empty_database_inserts_the_demo_data(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        assert await seed_once(url) == SEEDED
        assert await row_counts(url) == {
            "users": 7,
            "channels": 2,
            "channel_members": 4,
            "channel_join_requests": 1,
            "messages": 8,
        }


async def test_seeding_hashes_the_passwords_off_the_event_loop(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server seeds while it may be serving: hashing the passwords must run elsewhere."""
    hashed_on: list[int] = []

    def hash_and_record(password: str) -> str:
        hashed_on.append(threading.get_ident())
        return hash_now(password)

    monkeypatch.setattr(seeding, "hash_now", hash_and_record)
    async with fresh_database(postgres_server_url) as url:
        assert await seed_once(url) == SEEDED
    assert len(hashed_on) == 7
    assert threading.get_ident() not in hashed_on, "a password was hashed on the event loop"


async def test_seeding_twice_changes_nothing_the_second_time(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        await seed_once(url)
        before = await snapshot(url)
        assert await seed_once(url) == NOTHING_CHANGED
        assert await snapshot(url) == before


async def test_concurrent_seeding_inserts_the_data_once(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        said = await asyncio.gather(seed_once(url), seed_once(url))
        assert sorted(said) == sorted([SEEDED, NOTHING_CHANGED])
        assert (await row_counts(url))["users"] == 7


async def test_rows_made_after_seeding_get_the_next_ids(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        await seed_once(url)
        user = await sql(
            url,
            "INSERT INTO users (username, username_key, hashed_password)"
            " VALUES ('after_seed', 'after_seed', 'x') RETURNING id",
        )
        channel = await sql(
            url, "INSERT INTO channels (name, slug) VALUES ('After', 'after') RETURNING id"
        )
        request = await sql(
            url,
            "INSERT INTO channel_join_requests (channel_id, user_id) VALUES (2, 7) RETURNING id",
        )
        assert (user[0]["id"], channel[0]["id"], request[0]["id"]) == (8, 3, 2)


async def test_seeding_a_database_with_other_users_is_refused(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        await sql(
            url,
            "INSERT INTO users (username, username_key, hashed_password)"
            " VALUES ('someone', 'someone', 'x')",
        )
        with pytest.raises(SeedError, match="already has other users"):
            await seed_once(url)
        assert (await row_counts(url))["users"] == 1


async def test_atomchat_seed_twice_says_nothing_changed(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        environment = child_environment(DATABASE_URL=url)
        first = await run_atomchat("seed", env=environment)
        assert first.returncode == 0, first.output
        assert SEEDED in first.output
        counts = await row_counts(url)

        second = await run_atomchat("seed", env=environment)
        assert second.returncode == 0, second.output
        assert NOTHING_CHANGED in second.output
        assert await row_counts(url) == counts


async def test_atomchat_seed_on_a_database_with_other_users_says_why_it_refuses(
    postgres_server_url: str,
) -> None:
    async with fresh_database(postgres_server_url) as url:
        await sql(
            url,
            "INSERT INTO users (username, username_key, hashed_password)"
            " VALUES ('someone', 'someone', 'x')",
        )
        refused = await run_atomchat("seed", env=child_environment(DATABASE_URL=url))
    assert refused.returncode == 1
    assert "atomchat: the database already has other users" in refused.output
    assert "Traceback" not in refused.output
