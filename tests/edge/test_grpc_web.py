"""grpc-web through Envoy, framed by hand: what a browser's grpc-web client
sends and reads, answered the same as over gRPC."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from atomchat.v1 import chat_pb2, join_requests_pb2, resources_pb2, users_pb2

from tests.edge.edge_support import (
    GrpcWebFrames,
    GrpcWebReply,
    grpc_web_frame,
    grpc_web_headers,
    parse_grpc_web,
)
from tests.support import People

STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


async def test_unary_call_answers_as_over_grpc(http: httpx.AsyncClient, people: People) -> None:
    person = await people.user("web_unary")
    direct = await person.api.users.GetMe(users_pb2.GetMeRequest())

    response = await http.post(
        "/atomchat.v1.UserService/GetMe",
        content=grpc_web_frame(users_pb2.GetMeRequest().SerializeToString()),
        headers=grpc_web_headers(person.token),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web")
    reply = parse_grpc_web(response)
    assert reply.trailers["grpc-status"] == "0"
    assert [resources_pb2.User.FromString(m) for m in reply.messages] == [direct]


async def test_lookup_and_ones_own_join_requests_over_grpc_web(
    http: httpx.AsyncClient, people: People
) -> None:
    owner, asker = await people.user("web_owner"), await people.user("web_asker")
    channel = await people.channel(owner)
    asked = await asker.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
    )

    async def call(method: str, request: Any) -> GrpcWebReply:
        response = await http.post(
            f"/atomchat.v1.{method}",
            content=grpc_web_frame(request.SerializeToString()),
            headers=grpc_web_headers(asker.token),
        )
        assert response.status_code == 200
        return parse_grpc_web(response)

    found = await call(
        "UserService/LookupUser", users_pb2.LookupUserRequest(username=owner.username)
    )
    assert found.trailers["grpc-status"] == "0"
    assert [resources_pb2.User.FromString(m).id for m in found.messages] == [owner.id]
    unknown = await call("UserService/LookupUser", users_pb2.LookupUserRequest(username="nobody"))
    assert unknown.trailers["grpc-status"] == "5"

    mine = await call(
        "JoinRequestService/ListMyJoinRequests", join_requests_pb2.ListMyJoinRequestsRequest()
    )
    assert mine.trailers["grpc-status"] == "0"
    (listed,) = [join_requests_pb2.ListMyJoinRequestsResponse.FromString(m) for m in mine.messages]
    assert list(listed.join_requests) == [asked]
    assert listed.join_requests[0].username == asker.username


async def test_text_mode_unary_call(http: httpx.AsyncClient, people: People) -> None:
    person = await people.user("web_text")
    body = grpc_web_frame(users_pb2.GetMeRequest().SerializeToString())
    headers = grpc_web_headers(person.token) | {
        "content-type": "application/grpc-web-text",
        "accept": "application/grpc-web-text",
    }
    response = await http.post(
        "/atomchat.v1.UserService/GetMe", content=base64.b64encode(body), headers=headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/grpc-web-text")
    # Each frame is encoded on its own, padding included: decode by quantum.
    text = response.content
    decoded = httpx.Response(
        200, content=b"".join(base64.b64decode(text[i : i + 4]) for i in range(0, len(text), 4))
    )
    reply = parse_grpc_web(decoded)
    assert reply.trailers["grpc-status"] == "0"
    assert resources_pb2.User.FromString(reply.messages[0]).username == person.username


async def test_errors_arrive_as_grpc_status(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/atomchat.v1.UserService/GetMe",
        content=grpc_web_frame(b""),
        headers=grpc_web_headers(),
    )
    assert response.status_code == 200
    reply = parse_grpc_web(response)
    assert reply.messages == []
    assert reply.trailers["grpc-status"] == "16"
    assert "bearer" in reply.trailers["grpc-message"].lower()


async def grpc_web_events(response: httpx.Response) -> AsyncGenerator[chat_pb2.ChatEvent]:
    """ChatEvents of a grpc-web stream as they arrive, heartbeats left out."""
    frames = GrpcWebFrames()
    async for chunk in response.aiter_bytes():
        for flag, payload in frames.feed(chunk):
            assert flag == 0, "the stream ended"
            event = chat_pb2.ChatEvent.FromString(payload)
            if not event.HasField("heartbeat"):
                yield event


async def next_direct(call: Any) -> chat_pb2.ChatEvent:
    """The next ChatEvent of a gRPC stream, heartbeats left out."""
    while True:
        event: chat_pb2.ChatEvent = await call.read()
        if not event.HasField("heartbeat"):
            return event


async def test_subscribe_streams_as_over_grpc(http: httpx.AsyncClient, people: People) -> None:
    owner = await people.user("web_stream")
    reader = await people.user("web_reader")
    channel = await people.channel(owner, members=(reader,))
    for text in ("one", "two", "three"):
        await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content=text)
        )
    request = chat_pb2.SubscribeRequest(channel_id=channel.id, history_limit=2)
    direct_call = reader.api.chat.Subscribe(request)

    async with (
        http.stream(
            "POST",
            "/atomchat.v1.ChatService/Subscribe",
            content=grpc_web_frame(request.SerializeToString()),
            headers=grpc_web_headers(reader.token),
            timeout=STREAM_TIMEOUT,
        ) as response,
        contextlib.aclosing(grpc_web_events(response)) as events,
    ):
        assert response.status_code == 200
        async with asyncio.timeout(10):
            direct = [await next_direct(direct_call) for _ in range(3)]
            via_envoy = [await anext(events) for _ in range(3)]
        assert via_envoy == direct
        assert via_envoy[0].joined.channel.id == channel.id
        assert [e.message.content for e in via_envoy[1:]] == ["two", "three"]

        sent = await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="live")
        )
        async with asyncio.timeout(10):
            live_direct = await next_direct(direct_call)
            live = await anext(events)
        assert live == live_direct
        assert live.message.seq == sent.seq
    direct_call.cancel()


async def test_a_refused_stream_ends_with_its_status(
    http: httpx.AsyncClient, people: People
) -> None:
    owner = await people.user("web_refused")
    outsider = await people.user("web_outsider")
    channel = await people.channel(owner)
    response = await http.post(
        "/atomchat.v1.ChatService/Subscribe",
        content=grpc_web_frame(
            chat_pb2.SubscribeRequest(channel_id=channel.id).SerializeToString()
        ),
        headers=grpc_web_headers(outsider.token),
    )
    reply: GrpcWebReply = parse_grpc_web(response)
    assert reply.messages == []
    assert reply.trailers["grpc-status"] == "7"
    assert reply.trailers["grpc-message"] == "You are not a member of this channel."
