"""Plain gRPC through Envoy's HTTP port: stubs and grpcurl work there too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from atomchat.v1 import chat_pb2, users_pb2

from atomchat_server.app import SERVICE_NAMES
from devsupport import run_grpcurl
from tests.edge.edge_support import authority
from tests.support import Api, People


@pytest.fixture(scope="module")
async def envoy_channel(envoy_url: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(authority(envoy_url)) as channel:
        yield channel


async def test_unary_call(envoy_channel: grpc.aio.Channel, people: People) -> None:
    person = await people.user("passthrough")
    me = await Api(envoy_channel, person.token).users.GetMe(users_pb2.GetMeRequest())
    assert me.username == person.username


async def test_bidirectional_chat_stream(envoy_channel: grpc.aio.Channel, people: People) -> None:
    person = await people.user("bidi")
    channel = await people.channel(person)
    call = Api(envoy_channel, person.token).chat.ChatStream()
    async with asyncio.timeout(10):
        await call.write(chat_pb2.ChatStreamRequest(join=chat_pb2.ChatJoin(channel_id=channel.id)))
        joined = await call.read()
        assert joined.joined.channel.id == channel.id
        await call.write(
            chat_pb2.ChatStreamRequest(send=chat_pb2.ChatSend(content="hi", client_message_id="k"))
        )
        kinds: dict[str, chat_pb2.ChatStreamResponse] = {}
        while {"message", "ack"} - set(kinds):
            frame = await call.read()
            kinds[frame.WhichOneof("frame")] = frame
    assert kinds["message"].message.content == "hi"
    assert kinds["ack"].ack.client_message_id == "k"
    call.cancel()


async def test_grpcurl_lists_services_and_calls_through_envoy(
    envoy_url: str, people: People
) -> None:
    address = authority(envoy_url)
    listed = await run_grpcurl("-plaintext", address, "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert {*SERVICE_NAMES, "grpc.health.v1.Health"} <= set(services)

    person = await people.user("grpcurl")
    me = await run_grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {person.token}",
        address,
        "atomchat.v1.UserService/GetMe",
    )
    assert me.returncode == 0, me.stderr
    assert me.json()["username"] == person.username
