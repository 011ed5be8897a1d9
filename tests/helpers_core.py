"""Helpers for the core service tests: fresh databases, page walking, lookups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from atomchat.v1 import channels_pb2, members_pb2, resources_pb2
from grpc_health.v1 import health_pb2_grpc

from atomchat_server.db.migrate import upgrade
from tests.support import Person, create_database, drop_database, sql

ATOMCHAT = os.path.join(os.path.dirname(sys.executable), "atomchat")


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A database of its own (migrated to head unless told otherwise), dropped afterwards."""
    url = await create_database(server_url)
    try:
        if migrated:
            await upgrade(url)
        yield url
    finally:
        await drop_database(url)


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


@dataclass
class Completed:
    returncode: int
    output: str


async def run_atomchat(*args: str, env: dict[str, str], timeout: float = 120) -> Completed:
    """Run the `atomchat` console script without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        ATOMCHAT,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(timeout):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return Completed(process.returncode, output.decode())


def child_environment(**values: str) -> dict[str, str]:
    """This process's environment without our settings, plus `values`."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith("ATOMCHAT_")
    }
    environment.update(values)
    return environment


def health_stub(grpc_channel: grpc.aio.Channel) -> Any:
    """The Health stub (its type stubs know only the synchronous channel)."""
    return health_pb2_grpc.HealthStub(cast(Any, grpc_channel))
