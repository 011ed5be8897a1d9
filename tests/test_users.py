"""UserService (SPEC §4): Register, Login, GetMe, LookupUser, BlockUser, UnblockUser."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from atomchat.v1 import resources_pb2, users_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from tests.support import People, Person, fails, sql, unique

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
BAD_CREDENTIALS = "Invalid authentication credentials"


# Register


async def test_register_returns_the_new_user(people: People) -> None:
    username = unique("reg")
    user = await people.anonymous.users.Register(
        users_pb2.RegisterRequest(username=username, password="pass")
    )
    assert user.id > 7
    assert user.username == username
    assert user.role == resources_pb2.ROLE_USER
    assert user.is_active
    created = user.created_at.ToDatetime(tzinfo=UTC)
    assert abs((created - datetime.now(UTC)).total_seconds()) < 60


async def test_register_with_a_taken_username_is_already_exists(people: People) -> None:
    person = await people.user()
    failure = await fails(
        people.anonymous.users.Register(
            users_pb2.RegisterRequest(username=person.username, password="other-pw")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "Username already exists",
    )
    assert failure.reason == "USERNAME_TAKEN"


async def test_register_with_a_seeded_username_is_already_exists(people: People) -> None:
    await fails(
        people.anonymous.users.Register(
            users_pb2.RegisterRequest(username="moderator", password="1234")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "Username already exists",
    )


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("abc", id="3-chars"),
        pytest.param("a" * 33, id="33-chars"),
        pytest.param("", id="empty"),
        pytest.param("with space", id="space"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("slash/name", id="slash"),
        pytest.param(" padded ", id="padded"),
    ],
)
async def test_register_refuses_a_bad_username_with_a_field_violation(
    people: People, username: str
) -> None:
    failure = await fails(
        people.anonymous.users.Register(
            users_pb2.RegisterRequest(username=username, password="pass")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Username must be 4-32 characters: letters, digits, '_', '.' or '-'",
    )
    assert failure.reason == "INVALID_USERNAME"
    assert [field for field, _ in failure.violations] == ["username"]


@pytest.mark.parametrize(
    "password",
    [pytest.param("123", id="3-chars"), pytest.param("p" * 129, id="129-chars")],
)
async def test_register_refuses_a_bad_password_with_a_field_violation(
    people: People, password: str
) -> None:
    failure = await fails(
        people.anonymous.users.Register(
            users_pb2.RegisterRequest(username=unique("pw"), password=password)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Password must be 4-128 characters",
    )
    assert failure.reason == "INVALID_PASSWORD"
    assert failure.violations == [("password", "Password must be 4-128 characters")]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("ab.c", "1234", id="4-char-username-and-password"),
        pytest.param("u" * 32, "p" * 128, id="32-char-username-128-char-password"),
        pytest.param("Ivan.Petrov-2_x", "pass", id="letters-digits-dot-dash-underscore"),
        pytest.param("Иван_Петров", "pass", id="non-latin-letters"),
    ],
)
async def test_register_accepts_the_edges_of_the_rules(
    people: People, username: str, password: str
) -> None:
    user = await people.anonymous.users.Register(
        users_pb2.RegisterRequest(username=username, password=password)
    )
    assert user.username == username
    logged_in = await people.login(username, password)
    assert logged_in.id == user.id


# Login and GetMe


async def test_login_returns_a_bearer_token_and_the_user(people: People) -> None:
    person = await people.user()
    response = await people.anonymous.users.Login(
        users_pb2.LoginRequest(username=person.username, password=person.password)
    )
    assert response.access_token
    assert response.token_type == "bearer"
    assert response.expires_in == 20 * 60
    assert response.user.id == person.id
    assert response.user.username == person.username
    assert response.user.role == resources_pb2.ROLE_USER


async def test_login_with_a_wrong_password_is_unauthenticated(people: People) -> None:
    person = await people.user()
    failure = await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username=person.username, password="wrong-password")
        ),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )
    assert failure.reason == "INVALID_CREDENTIALS"


async def test_login_as_an_unknown_user_is_unauthenticated(people: People) -> None:
    failure = await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username=unique("nobody"), password="whatever")
        ),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )
    assert failure.reason == "INVALID_CREDENTIALS"


async def test_login_with_a_nul_in_the_username_is_unauthenticated(people: People) -> None:
    await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username="moder\x00ator", password="1234")
        ),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )


async def test_a_password_may_hold_any_character(people: People) -> None:
    username = unique("anychar")
    password = "pa\x00ss wörd\n"
    await people.anonymous.users.Register(
        users_pb2.RegisterRequest(username=username, password=password)
    )
    assert (await people.login(username, password)).username == username


async def test_get_me_returns_the_callers_profile(people: People) -> None:
    person = await people.user()
    me = await person.api.users.GetMe(users_pb2.GetMeRequest())
    assert (me.id, me.username, me.role, me.is_active) == (
        person.id,
        person.username,
        resources_pb2.ROLE_USER,
        True,
    )
    assert me.created_at.seconds > 0


async def test_get_me_without_a_token_is_unauthenticated(people: People) -> None:
    failure = await fails(people.anonymous.users.GetMe(users_pb2.GetMeRequest()), UNAUTHENTICATED)
    assert failure.reason == "MISSING_TOKEN"


async def test_a_moderator_sees_the_moderator_role(people: People) -> None:
    moderator = await people.moderator()
    me = await moderator.api.users.GetMe(users_pb2.GetMeRequest())
    assert me.role == resources_pb2.ROLE_MODERATOR


# LookupUser


async def lookup(person: Person, username: str) -> resources_pb2.User:
    found: resources_pb2.User = await person.api.users.LookupUser(
        users_pb2.LookupUserRequest(username=username)
    )
    return found


async def test_any_user_finds_another_by_username(people: People) -> None:
    user, other = await people.user(), await people.user()
    found = await lookup(user, other.username)
    assert (found.id, found.username, found.role, found.is_active) == (
        other.id,
        other.username,
        resources_pb2.ROLE_USER,
        True,
    )
    assert found.HasField("created_at")
    seeded = await lookup(user, "moderator")
    assert (seeded.id, seeded.role) == (1, resources_pb2.ROLE_MODERATOR)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("MODERATOR", id="upper-case"),
        pytest.param("ｍｏｄｅｒａｔｏｒ", id="fullwidth"),
        pytest.param("𝗆𝗈𝖽𝖾𝗋𝖺𝗍𝗈𝗋", id="math-sans-serif"),
        pytest.param("m\u043ederator", id="cyrillic-o"),
    ],
)
async def test_a_username_is_matched_as_logins_and_mentions_match_it(
    people: People, spelling: str
) -> None:
    user = await people.user()
    found = await lookup(user, spelling)
    assert (found.id, found.username) == (1, "moderator"), "the spelling it was registered with"


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("nobody_by_this_name", id="unknown"),
        pytest.param("a" * 33, id="longer-than-any-username"),
        pytest.param("user\x00name", id="nul"),
        pytest.param("with space", id="not-a-username"),
    ],
)
async def test_an_unknown_username_is_not_found(people: People, username: str) -> None:
    user = await people.user()
    failure = await fails(
        user.api.users.LookupUser(users_pb2.LookupUserRequest(username=username)),
        grpc.StatusCode.NOT_FOUND,
        "User not found",
    )
    assert failure.reason == "USER_NOT_FOUND"


async def test_an_empty_username_is_invalid(people: People) -> None:
    user = await people.user()
    failure = await fails(
        user.api.users.LookupUser(users_pb2.LookupUserRequest(username="")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Username is required",
    )
    assert [field for field, _ in failure.violations] == ["username"]


async def test_a_blocked_user_is_found_by_moderators_only(people: People) -> None:
    moderator, user, blocked = await people.moderator(), await people.user(), await people.user()
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=blocked.id))

    seen = await lookup(moderator, blocked.username.upper())
    assert (seen.id, seen.is_active) == (blocked.id, False)
    failure = await fails(
        user.api.users.LookupUser(users_pb2.LookupUserRequest(username=blocked.username)),
        grpc.StatusCode.NOT_FOUND,
        "User not found",
    )
    assert failure.reason == "USER_NOT_FOUND"

    await moderator.api.users.UnblockUser(users_pb2.UnblockUserRequest(user_id=blocked.id))
    assert (await lookup(user, blocked.username)).is_active


async def test_looking_up_without_a_token_is_unauthenticated(people: People) -> None:
    await fails(
        people.anonymous.users.LookupUser(users_pb2.LookupUserRequest(username="moderator")),
        UNAUTHENTICATED,
    )


# BlockUser and UnblockUser


async def test_moderator_blocks_a_user(people: People) -> None:
    moderator, user = await people.moderator(), await people.user()
    blocked = await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    assert blocked.id == user.id
    assert not blocked.is_active


async def test_a_blocked_user_cannot_log_in(people: People) -> None:
    moderator, user = await people.moderator(), await people.user()
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    failure = await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username=user.username, password=user.password)
        ),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )
    assert failure.reason == "INVALID_CREDENTIALS"


async def test_a_blocked_users_old_token_stops_working_on_the_next_call(people: People) -> None:
    moderator, user = await people.moderator(), await people.user()
    await user.api.users.GetMe(users_pb2.GetMeRequest())  # the token works (and is cached)
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    await fails(user.api.users.GetMe(users_pb2.GetMeRequest()), UNAUTHENTICATED, BAD_CREDENTIALS)


async def test_unblocking_restores_login_but_not_the_tokens_issued_before_the_block(
    people: People,
) -> None:
    moderator, user = await people.moderator(), await people.user()
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    await fails(user.api.users.GetMe(users_pb2.GetMeRequest()), UNAUTHENTICATED)

    unblocked = await moderator.api.users.UnblockUser(users_pb2.UnblockUserRequest(user_id=user.id))
    assert unblocked.is_active
    await fails(user.api.users.GetMe(users_pb2.GetMeRequest()), UNAUTHENTICATED)
    again = await people.login(user.username, user.password)
    me = await again.api.users.GetMe(users_pb2.GetMeRequest())
    assert (me.id, me.is_active) == (user.id, True)


async def test_a_non_moderator_cannot_block(people: People) -> None:
    user, target = await people.user(), await people.user()
    failure = await fails(
        user.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=target.id)),
        grpc.StatusCode.PERMISSION_DENIED,
        "Not enough permissions",
    )
    assert failure.reason == "MODERATOR_REQUIRED"
    me = await target.api.users.GetMe(users_pb2.GetMeRequest())
    assert me.is_active


async def test_a_non_moderator_cannot_unblock(people: People) -> None:
    user, target = await people.user(), await people.user()
    failure = await fails(
        user.api.users.UnblockUser(users_pb2.UnblockUserRequest(user_id=target.id)),
        grpc.StatusCode.PERMISSION_DENIED,
        "Not enough permissions",
    )
    assert failure.reason == "MODERATOR_REQUIRED"


async def test_blocking_an_unknown_user_is_not_found(people: People) -> None:
    moderator = await people.moderator()
    failure = await fails(
        moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=10**12)),
        grpc.StatusCode.NOT_FOUND,
        "User not found",
    )
    assert failure.reason == "USER_NOT_FOUND"


async def test_unblocking_an_unknown_user_is_not_found(people: People) -> None:
    moderator = await people.moderator()
    failure = await fails(
        moderator.api.users.UnblockUser(users_pb2.UnblockUserRequest(user_id=10**12)),
        grpc.StatusCode.NOT_FOUND,
        "User not found",
    )
    assert failure.reason == "USER_NOT_FOUND"


async def test_a_moderator_cannot_block_themselves(people: People) -> None:
    moderator = await people.moderator()
    failure = await fails(
        moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=moderator.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "You cannot block yourself",
    )
    assert failure.reason == "CANNOT_BLOCK_SELF"
    me = await moderator.api.users.GetMe(users_pb2.GetMeRequest())
    assert me.is_active


async def test_a_blocked_moderator_loses_moderator_powers(people: People) -> None:
    first, second = await people.moderator(), await people.moderator()
    target = await people.user()
    await first.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=second.id))
    await fails(
        second.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=target.id)),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )


async def test_an_error_carries_error_info_in_the_atomchat_domain(people: People) -> None:
    person = await people.user()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await people.anonymous.users.Register(
            users_pb2.RegisterRequest(username=person.username, password="other-pw")
        )
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None
    assert status.code == code_pb2.ALREADY_EXISTS
    assert status.message == "Username already exists"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append((info.domain, info.reason))
    assert infos == [("atomchat", "USERNAME_TAKEN")]


async def test_a_user_whose_stored_hash_is_unusable_cannot_log_in(people: People) -> None:
    """An account locked by hand (hash set to '!') is refused like a wrong password."""
    person = await people.user()
    await sql(
        people.database_url, "UPDATE users SET hashed_password = '!' WHERE id = $1", person.id
    )
    failure = await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username=person.username, password=person.password)
        ),
        UNAUTHENTICATED,
        BAD_CREDENTIALS,
    )
    assert failure.reason == "INVALID_CREDENTIALS"
