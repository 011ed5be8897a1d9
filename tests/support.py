"""Test helpers: SQL, authenticated stubs, people and channels, lists read whole,
expected errors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import asyncpg
import grpc
import pytest
from atomchat.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    chat_pb2_grpc,
    inbox_pb2_grpc,
    join_requests_pb2_grpc,
    members_pb2,
    members_pb2_grpc,
    resources_pb2,
    users_pb2,
    users_pb2_grpc,
)
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status

from devsupport import admin_dsn

T = TypeVar("T")

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test uses (usernames allow 32 characters)."""
    return f"{prefix}_{next(_counter)}_{uuid.uuid4().hex[:8]}"


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(admin_dsn(url))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def one_member_channel(connection: asyncpg.Connection) -> tuple[int, int]:
    """A user 'poster', a channel 'c' and the user a member of it: (user id, channel id)."""
    user_id = await connection.fetchval(
        "INSERT INTO users (username, username_key, hashed_password)"
        " VALUES ('poster', 'poster', 'x') RETURNING id"
    )
    channel_id = await connection.fetchval(
        "INSERT INTO channels (name, slug) VALUES ('c', 'c') RETURNING id"
    )
    await connection.execute(
        "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)", channel_id, user_id
    )
    return user_id, channel_id


class Authed:
    """A stub whose calls carry a bearer token."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self._metadata)
            return method(*args, **kwargs)

        return call


@dataclass
class Api:
    """Every service, as one caller (anonymous when token is empty)."""

    channel: grpc.aio.Channel
    token: str = ""

    def __post_init__(self) -> None:
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        self.metadata = metadata
        self.users = Authed(users_pb2_grpc.UserServiceStub(self.channel), metadata)
        self.channels = Authed(channels_pb2_grpc.ChannelServiceStub(self.channel), metadata)
        self.join_requests = Authed(
            join_requests_pb2_grpc.JoinRequestServiceStub(self.channel), metadata
        )
        self.members = Authed(members_pb2_grpc.MemberServiceStub(self.channel), metadata)
        self.chat = Authed(chat_pb2_grpc.ChatServiceStub(self.channel), metadata)
        self.inbox = Authed(inbox_pb2_grpc.InboxServiceStub(self.channel), metadata)


@dataclass
class Person:
    id: int
    username: str
    password: str
    token: str
    api: Api


class People:
    """Makes users (and moderators, and channels) that no other test touches."""

    def __init__(self, grpc_channel: grpc.aio.Channel, database_url: str) -> None:
        self.grpc_channel = grpc_channel
        self.database_url = database_url
        self.anonymous = Api(grpc_channel)

    async def login(self, username: str, password: str) -> Person:
        response = await self.anonymous.users.Login(
            users_pb2.LoginRequest(username=username, password=password)
        )
        return Person(
            id=response.user.id,
            username=username,
            password=password,
            token=response.access_token,
            api=Api(self.grpc_channel, response.access_token),
        )

    async def user(self, prefix: str = "user") -> Person:
        username = unique(prefix)
        await self.anonymous.users.Register(
            users_pb2.RegisterRequest(username=username, password="secret-pw")
        )
        return await self.login(username, "secret-pw")

    async def moderator(self) -> Person:
        person = await self.user("mod")
        await sql(self.database_url, "UPDATE users SET role = 'moderator' WHERE id = $1", person.id)
        return await self.login(person.username, person.password)

    async def channel(
        self, owner: Person, *, members: tuple[Person, ...] = (), description: str = ""
    ) -> resources_pb2.Channel:
        created: resources_pb2.Channel = await owner.api.channels.CreateChannel(
            channels_pb2.CreateChannelRequest(name=unique("Channel"), description=description)
        )
        for member in members:
            await owner.api.members.AddMember(
                members_pb2.AddMemberRequest(channel_id=created.id, user_id=member.id)
            )
        return created


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    reason: str
    violations: list[tuple[str, str]]
    # ErrorInfo's metadata.
    metadata: dict[str, str] = field(default_factory=dict)


async def fails(call: Awaitable[Any], code: grpc.StatusCode, message: str | None = None) -> Failure:
    """Await a call that must fail with `code` (and `message`, when given)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    failure = failure_of(raised.value)
    assert failure.code == code, f"expected {code}, got {failure.code}: {failure.message}"
    if message is not None:
        assert failure.message == message
    return failure


def failure_of(error: grpc.aio.AioRpcError) -> Failure:
    reason = ""
    violations: list[tuple[str, str]] = []
    metadata: dict[str, str] = {}
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Unpack(bad_request):
            violations = [(v.field, v.description) for v in bad_request.field_violations]
    return Failure(error.code(), error.details() or "", reason, violations, metadata)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` until it holds (for state that has no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - state kept elsewhere, with no event to await
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def env(**values: str) -> AsyncIterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def all_pages(
    fetch: Callable[[str], Awaitable[Any]], items: str
) -> tuple[list[Any], list[Any]]:
    """Every item of a list RPC, page by page; also returns each response."""
    found: list[Any] = []
    responses: list[Any] = []
    token = ""
    while True:
        response = await fetch(token)
        responses.append(response)
        found.extend(getattr(response, items))
        token = response.next_page_token
        if not token:
            return found, responses


async def my_channel_ids(person: Person) -> list[int]:
    response = await person.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=200)
    )
    return [c.id for c in response.channels]


async def all_channel_ids(person: Person) -> list[int]:
    async def fetch(token: str) -> Any:
        return await person.api.channels.ListChannels(
            channels_pb2.ListChannelsRequest(page_size=200, page_token=token)
        )

    channels, _ = await all_pages(fetch, "channels")
    return [c.id for c in channels]


async def member_ids(reader: Person, channel_id: int) -> list[int]:
    response = await reader.api.members.ListMembers(
        members_pb2.ListMembersRequest(channel_id=channel_id, page_size=200)
    )
    return [m.user_id for m in response.members]


async def channel_by_id(reader: Person, channel_id: int) -> resources_pb2.Channel:
    """The channel as ListMyChannels shows it to a member."""
    response = await reader.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=200)
    )
    found: resources_pb2.Channel = next(c for c in response.channels if c.id == channel_id)
    return found


async def member_rows(database_url: str, channel_id: int) -> int:
    rows = await sql(
        database_url, "SELECT count(*) AS n FROM channel_members WHERE channel_id = $1", channel_id
    )
    return int(rows[0]["n"])


async def stored_member_count(database_url: str, channel_id: int) -> int:
    rows = await sql(database_url, "SELECT member_count FROM channels WHERE id = $1", channel_id)
    return int(rows[0]["member_count"])


def health_stub(grpc_channel: grpc.aio.Channel) -> Any:
    """The Health stub (its type stubs know only the synchronous channel)."""
    return health_pb2_grpc.HealthStub(cast(Any, grpc_channel))
