"""Usernames that look alike are one name; names carry no invisible characters."""

from __future__ import annotations

import random

import grpc
import pytest
from atomchat.v1 import resources_pb2, users_pb2

from atomchat_server.db.migrate import upgrade
from atomchat_server.domain.usernames import username_key
from devsupport import fresh_database
from tests.support import People, fails, sql


async def register(people: People, username: str) -> resources_pb2.User:
    user: resources_pb2.User = await people.anonymous.users.Register(
        users_pb2.RegisterRequest(username=username, password="secret-pw")
    )
    return user


@pytest.mark.parametrize(
    "lookalike",
    [
        "Moderator",
        "MODERATOR",
        "ｍｏｄｅｒａｔｏｒ",  # fullwidth
        "𝗆𝗈𝖽𝖾𝗋𝖺𝗍𝗈𝗋",  # mathematical sans-serif
        "rnoderator",  # r n, as m
    ],
)
async def test_a_name_that_looks_like_the_seeded_moderator_is_taken(
    people: People, lookalike: str
) -> None:
    failure = await fails(register(people, lookalike), grpc.StatusCode.ALREADY_EXISTS)
    assert (failure.message, failure.reason) == ("Username already exists", "USERNAME_TAKEN")


LATIN_WITH_CYRILLIC_TWINS = str.maketrans("aceopxy", "асеорху")


async def test_a_name_in_another_script_that_looks_the_same_is_taken(people: People) -> None:
    latin = "".join(random.choice("aceopxy") for _ in range(12))
    await register(people, latin)
    cyrillic = latin.translate(LATIN_WITH_CYRILLIC_TWINS)
    assert cyrillic != latin
    await fails(register(people, cyrillic), grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize(
    "name",
    [
        "mоderator",  # a Cyrillic о among Latin letters
        "ivan_иван",
        "abc١٢٣",  # Latin with Arabic-Indic digits
    ],
)
async def test_a_name_mixing_scripts_is_invalid(people: People, name: str) -> None:
    failure = await fails(register(people, name), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.reason == "INVALID_USERNAME"


@pytest.mark.parametrize(
    "character",
    ["\u202e", "\u2066", "\u200b", "\u0085", "\u009b", "\u00ad"],
    ids=["RLO", "LRI", "ZWSP", "NEL", "CSI", "soft-hyphen"],
)
async def test_a_name_with_a_control_or_format_character_is_invalid(
    people: People, character: str
) -> None:
    failure = await fails(
        register(people, f"evil{character}name"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert failure.reason == "INVALID_USERNAME"


async def test_names_of_one_script_other_than_latin_register(people: People) -> None:
    cyrillic = "".join(random.choice("бвгджзийклмнптфцчшщыэюя") for _ in range(10))
    japanese = "山田" + "".join(random.choice("あいうえおかきくけこ") for _ in range(8))
    for name in (cyrillic, japanese):
        user = await register(people, name)
        assert user.username == name
    await fails(register(people, cyrillic.upper()), grpc.StatusCode.ALREADY_EXISTS)


def test_the_key_folds_width_case_and_confusables() -> None:
    assert (
        username_key("moderator")
        == username_key("Moderator")
        == username_key("ｍｏｄｅｒａｔｏｒ")
        == username_key("𝗆𝗈𝖽𝖾𝗋𝖺𝗍𝗈𝗋")
        == username_key("mоderator")
    )
    assert username_key("moderator") != username_key("moderators")


async def test_the_migration_refuses_existing_lookalikes_and_names_them(
    postgres_server_url: str,
) -> None:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        await upgrade(url, "0001")
        await sql(
            url,
            "INSERT INTO users (username, hashed_password)"
            " VALUES ('moderator', 'x'), ('mоderator', 'x'), ('alice', 'x')",
        )
        with pytest.raises(Exception, match="look alike") as raised:
            await upgrade(url)
        assert "'moderator'" in str(raised.value)
        assert "'mоderator'" in str(raised.value)
        await sql(url, "DELETE FROM users WHERE username = 'mоderator'")
        await upgrade(url)
        rows = await sql(url, "SELECT username, username_key FROM users ORDER BY id")
        assert [(r["username"], r["username_key"]) for r in rows] == [
            ("moderator", username_key("moderator")),
            ("alice", username_key("alice")),
        ]
