"""Test helpers: databases, authenticated stubs, people and channels, expected errors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
from atomchat.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    chat_pb2_grpc,
    join_requests_pb2_grpc,
    members_pb2,
    members_pb2_grpc,
    resources_pb2,
    users_pb2,
    users_pb2_grpc,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.engine import make_url

T = TypeVar("T")

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test uses (usernames allow 32 characters)."""
    return f"{prefix}_{next(_counter)}_{uuid.uuid4().hex[:8]}"


def admin_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`; returns its URL."""
    name = f"atomchat_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(admin_dsn(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin_dsn(server_url, name)


async def drop_database(url: str) -> None:
    name = make_url(url).database
    connection = await asyncpg.connect(admin_dsn(url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(admin_dsn(url))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


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
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad_request):
            violations = [(v.field, v.description) for v in bad_request.field_violations]
    return Failure(error.code(), error.details() or "", reason, violations)


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


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    port: int
    output: list[str]


@contextlib.asynccontextmanager
async def server_process(
    database_url: str | None, *args: str, **environment: str
) -> AsyncIterator[ServerProcess]:
    """`atomchat serve --no-envoy --grpc-port 0` as a child process, stopped with SIGTERM."""
    child_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        child_env["DATABASE_URL"] = database_url
    child_env.update(environment)
    process = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "atomchat"),
        "serve",
        "--no-envoy",
        "--grpc-port",
        "0",
        *args,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    port = 0
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(60):
            assert process.stdout is not None
            while not port:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise AssertionError("server exited early:\n" + "".join(output))
                output.append(line)
                if line.startswith("gRPC "):
                    port = int(line.split()[-1].rsplit(":", 1)[1])
            while "ready" not in output[-1]:
                output.append((await process.stdout.readline()).decode())
        drain = asyncio.create_task(_drain(process, output))
        yield ServerProcess(process, port, output)
    finally:
        if process.returncode is None:
            process.terminate()
            async with asyncio.timeout(30):
                await process.wait()
        if drain is not None:
            await drain


async def _drain(process: asyncio.subprocess.Process, output: list[str]) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        output.append(line.decode())
