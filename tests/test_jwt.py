"""Access tokens (SPEC §3): HS256 JWTs; anything else is UNAUTHENTICATED."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from atomchat.v1 import users_pb2

from atomchat_server.app import App
from atomchat_server.config import Settings
from tests.conftest import with_settings
from tests.support import Api, People, Person, fails

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
BAD_CREDENTIALS = "Invalid authentication credentials"


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def claims_for(person: Person, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(person.id),
        "username": person.username,
        "role": "user",
        "iat": now,
        "exp": now + timedelta(minutes=20),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def sign(claims: dict[str, Any], secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


async def get_me_with(people: People, token: str) -> Any:
    return await Api(people.grpc_channel, token).users.GetMe(users_pb2.GetMeRequest())


async def refused(people: People, token: str) -> None:
    failure = await fails(get_me_with(people, token), UNAUTHENTICATED, BAD_CREDENTIALS)
    assert failure.reason == "INVALID_CREDENTIALS"


def flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.fixture
async def person(people: People) -> Person:
    return await people.user("jwt")


async def test_a_hand_signed_token_with_every_claim_is_accepted(
    people: People, person: Person, settings: Settings
) -> None:
    me = await get_me_with(people, sign(claims_for(person), settings.jwt_secret))
    assert me.id == person.id


async def test_a_token_living_longer_than_the_server_issues_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    """Signed with the right secret, but for a day: not a token this server issued."""
    now = datetime.now(UTC)
    await refused(
        people, sign(claims_for(person, iat=now, exp=now + timedelta(days=1)), settings.jwt_secret)
    )
    lifetime = timedelta(minutes=settings.token_minutes)
    at_the_limit = claims_for(person, iat=now, exp=now + lifetime)
    assert (await get_me_with(people, sign(at_the_limit, settings.jwt_secret))).id == person.id


async def test_a_token_issued_before_a_block_stays_refused_after_the_unblock(
    people: People, person: Person, settings: Settings
) -> None:
    moderator = await people.moderator()
    before = sign(claims_for(person), settings.jwt_secret)
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=person.id))
    await moderator.api.users.UnblockUser(users_pb2.UnblockUserRequest(user_id=person.id))
    await refused(people, before)
    again = await people.login(person.username, person.password)
    assert (await get_me_with(people, again.token)).id == person.id


async def test_an_expired_token_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=21)
    claims = claims_for(person, iat=past, exp=past + timedelta(minutes=20))
    await refused(people, sign(claims, settings.jwt_secret))


async def test_a_token_with_a_tampered_signature_is_unauthenticated(
    people: People, person: Person
) -> None:
    header, payload, signature = person.token.split(".")
    await refused(people, ".".join((header, payload, flip(signature, len(signature) // 2))))


async def test_a_token_with_a_tampered_payload_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    header, _, signature = person.token.split(".")
    claims = jwt.decode(person.token, settings.jwt_secret, algorithms=["HS256"])
    claims["role"] = "moderator"
    await refused(people, ".".join((header, b64(claims), signature)))


async def test_a_token_signed_with_another_secret_is_unauthenticated(
    people: People, person: Person
) -> None:
    await refused(people, sign(claims_for(person), "another-secret-" + "y" * 32))


async def test_an_alg_none_token_is_unauthenticated(people: People, person: Person) -> None:
    claims = claims_for(person)
    unsigned = {
        **claims,
        "iat": int(claims["iat"].timestamp()),
        "exp": int(claims["exp"].timestamp()),
    }
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(unsigned)}."
    await refused(people, token)


async def test_a_token_signed_with_another_hmac_algorithm_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    with warnings.catch_warnings():
        # PyJWT advises a longer key for HS512; the server must refuse HS512 anyway.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        token = sign(claims_for(person), settings.jwt_secret, "HS512")
    await refused(people, token)


@pytest.mark.parametrize("missing", ["exp", "sub", "iat"])
async def test_a_token_missing_a_required_claim_is_unauthenticated(
    people: People, person: Person, settings: Settings, missing: str
) -> None:
    await refused(people, sign(claims_for(person, **{missing: None}), settings.jwt_secret))


async def test_a_token_whose_subject_is_not_a_string_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    await refused(people, sign(claims_for(person, sub=person.id), settings.jwt_secret))


async def test_a_token_for_a_user_who_does_not_exist_is_unauthenticated(
    people: People, person: Person, settings: Settings
) -> None:
    for subject in ("999999999", "not-a-number", str(2**70), "0", "-1", f"{person.id}_0", ""):
        await refused(people, sign(claims_for(person, sub=subject), settings.jwt_secret))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-parts"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9..", id="header-only"),
    ],
)
async def test_a_garbage_token_is_unauthenticated(people: People, token: str) -> None:
    await refused(people, token)


async def test_a_call_without_an_authorization_header_is_unauthenticated(
    people: People,
) -> None:
    failure = await fails(
        people.anonymous.users.GetMe(users_pb2.GetMeRequest()),
        UNAUTHENTICATED,
        "Missing bearer token: send 'authorization: Bearer <token>'",
    )
    assert failure.reason == "MISSING_TOKEN"


async def test_another_authorization_scheme_is_unauthenticated(
    people: People, person: Person
) -> None:
    failure = await fails(
        people.anonymous.users.GetMe(
            users_pb2.GetMeRequest(), metadata=(("authorization", f"Basic {person.token}"),)
        ),
        UNAUTHENTICATED,
    )
    assert failure.reason == "MISSING_TOKEN"


async def test_the_bearer_scheme_is_case_insensitive(people: People, person: Person) -> None:
    me = await people.anonymous.users.GetMe(
        users_pb2.GetMeRequest(), metadata=(("authorization", f"bearer {person.token}"),)
    )
    assert me.id == person.id


async def test_register_and_login_ignore_a_stale_token(
    people: People, person: Person, settings: Settings
) -> None:
    """A client holding an expired token must still be able to log in again."""
    past = datetime.now(UTC) - timedelta(minutes=21)
    stale = Api(
        people.grpc_channel,
        sign(claims_for(person, iat=past, exp=past + timedelta(minutes=20)), settings.jwt_secret),
    )
    login = await stale.users.Login(
        users_pb2.LoginRequest(username=person.username, password=person.password)
    )
    assert login.user.id == person.id
    registered = await stale.users.Register(
        users_pb2.RegisterRequest(username=person.username + "_2", password="secret-pw")
    )
    assert registered.username == person.username + "_2"


async def test_a_token_of_a_since_blocked_user_is_unauthenticated(
    people: People, person: Person
) -> None:
    moderator = await people.moderator()
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=person.id))
    await refused(people, person.token)


async def test_login_token_claims_are_sub_username_role_iat_and_exp(
    person: Person, settings: Settings
) -> None:
    assert jwt.get_unverified_header(person.token)["alg"] == "HS256"
    claims = jwt.decode(person.token, settings.jwt_secret, algorithms=["HS256"])
    assert set(claims) == {"sub", "username", "role", "iat", "exp"}
    assert claims["sub"] == str(person.id)
    assert claims["username"] == person.username
    assert claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 20 * 60
    assert abs(claims["iat"] - datetime.now(UTC).timestamp()) < 60


async def test_a_moderators_token_says_moderator(people: People, settings: Settings) -> None:
    moderator = await people.moderator()
    claims = jwt.decode(moderator.token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["role"] == "moderator"


def test_token_lifetime_defaults_to_20_minutes_and_follows_the_environment() -> None:
    assert Settings.from_environment({}).token_minutes == 20
    assert Settings.from_environment({"ATOMCHAT_TOKEN_MINUTES": "7"}).token_minutes == 7


@pytest.fixture
async def short_lived_app(database_url: str) -> AsyncIterator[App]:
    app = App(with_settings(token_minutes=5), database_url)
    await app.start()
    yield app
    await app.stop()


async def test_tokens_live_as_long_as_configured(
    short_lived_app: App, person: Person, settings: Settings
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{short_lived_app.port}") as channel:
        response = await Api(channel).users.Login(
            users_pb2.LoginRequest(username=person.username, password=person.password)
        )
    assert response.expires_in == 5 * 60
    claims = jwt.decode(response.access_token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 5 * 60
