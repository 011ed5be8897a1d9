"""The timeline through Envoy: every SPEC §7 route over JSON, updates over
server-sent events, and the same calls over grpc-web."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from atomchat.v1 import chat_pb2, resources_pb2

from tests.edge.edge_support import (
    bearer,
    error_reason,
    grpc_web_frame,
    grpc_web_headers,
    json_error,
    parse_grpc_web,
    sse_events,
)
from tests.edge.test_grpc_web import grpc_web_events
from tests.support import People

STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


async def next_event(events: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        event: dict[str, Any] = await anext(events)
        while "heartbeat" in event:
            event = await anext(events)
        return event


async def test_every_timeline_route_over_json_and_the_updates_over_sse(
    http: httpx.AsyncClient, people: People
) -> None:
    owner, member = await people.user("json_tl"), await people.user("json_tl")
    channel = await people.channel(owner, members=(member,))
    auth, member_auth = bearer(owner.token), bearer(member.token)
    base = f"/v1/channels/{channel.id}/messages"
    async with (
        http.stream(
            "GET",
            f"/v1/channels/{channel.id}/events",
            params={"history_limit": 0},
            headers=member_auth,
            timeout=STREAM_TIMEOUT,
        ) as response,
        contextlib.aclosing(sse_events(response)) as events,
    ):
        assert "joined" in await next_event(events)
        posted = (await http.post(base, json={"content": "pritet"}, headers=auth)).json()
        message_id = posted["id"]
        question = await http.post(
            base, json={"content": f"@{member.username} ?", "reply_to_id": message_id}, headers=auth
        )
        assert question.json()["reply_to_id"] == message_id
        assert question.json()["mention_user_ids"] == [str(member.id)]

        edited = await http.patch(f"{base}/{message_id}", json={"content": "привет"}, headers=auth)
        assert edited.status_code == 200, edited.text
        assert (edited.json()["content"], "edited_at" in edited.json()) == ("привет", True)
        reacted = await http.post(
            f"{base}/{message_id}/reactions", json={"emoji": "🎉"}, headers=member_auth
        )
        assert reacted.json()["reactions"] == [{"emoji": "🎉", "count": 1, "me": True}]
        taken_back = await http.post(
            f"{base}/{message_id}/reactions:remove", json={"emoji": "🎉"}, headers=member_auth
        )
        assert taken_back.json()["reactions"] == []
        one = await http.get(f"{base}/{message_id}", headers=member_auth)
        assert one.json()["content"] == "привет"
        found = await http.get("/v1/messages:search", params={"query": "приветы"}, headers=auth)
        assert [r["message"]["id"] for r in found.json()["results"]] == [message_id]
        assert "<mark>привет</mark>" in found.json()["results"][0]["snippet"]
        deleted = await http.delete(f"{base}/{message_id}", headers=auth)
        assert (deleted.json()["deleted"], deleted.json()["deleted_by"]) == (True, str(owner.id))

        seen = [await next_event(events) for _ in range(6)]
    assert [next(iter(event)) for event in seen] == [
        "message",
        "message",
        "update",
        "update",
        "update",
        "update",
    ]
    assert [event["update"]["kind"] for event in seen[2:]] == [
        "UPDATE_KIND_EDITED",
        "UPDATE_KIND_REACTIONS",
        "UPDATE_KIND_REACTIONS",
        "UPDATE_KIND_DELETED",
    ]
    assert [int(event["update"]["seq"]) for event in seen[2:]] == [3, 4, 5, 6]
    assert seen[3]["update"]["message"]["reactions"] == [{"emoji": "🎉", "count": 1, "me": True}], (
        "the member's own stream says me"
    )


async def test_timeline_errors_over_json(http: httpx.AsyncClient, people: People) -> None:
    owner, other = await people.user("json_tl_err"), await people.user("json_tl_err")
    channel = await people.channel(owner, members=(other,))
    base = f"/v1/channels/{channel.id}/messages"
    posted = (await http.post(base, json={"content": "mine"}, headers=bearer(owner.token))).json()
    refused = await http.patch(
        f"{base}/{posted['id']}", json={"content": "theirs"}, headers=bearer(other.token)
    )
    assert refused.status_code == 403
    assert error_reason(json_error(refused)[2]) == "NOT_THE_AUTHOR"
    bad_emoji = await http.post(
        f"{base}/{posted['id']}/reactions", json={"emoji": "no"}, headers=bearer(other.token)
    )
    assert bad_emoji.status_code == 400
    assert error_reason(json_error(bad_emoji)[2]) == "INVALID_EMOJI"
    missing = await http.get(f"{base}/999999999", headers=bearer(owner.token))
    assert missing.status_code == 404


async def test_edits_and_updates_over_grpc_web(http: httpx.AsyncClient, people: People) -> None:
    owner = await people.user("web_tl")
    channel = await people.channel(owner)
    sent = await owner.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(channel_id=channel.id, content="before")
    )
    request = chat_pb2.SubscribeRequest(channel_id=channel.id, after_seq=sent.seq)
    async with (
        http.stream(
            "POST",
            "/atomchat.v1.ChatService/Subscribe",
            content=grpc_web_frame(request.SerializeToString()),
            headers=grpc_web_headers(owner.token),
            timeout=STREAM_TIMEOUT,
        ) as response,
        contextlib.aclosing(grpc_web_events(response)) as events,
    ):
        async with asyncio.timeout(10):
            joined = await anext(events)
        assert joined.joined.last_seq == sent.seq
        edit = chat_pb2.EditMessageRequest(
            channel_id=channel.id, message_id=sent.id, content="after"
        )
        reply = parse_grpc_web(
            await http.post(
                "/atomchat.v1.ChatService/EditMessage",
                content=grpc_web_frame(edit.SerializeToString()),
                headers=grpc_web_headers(owner.token),
            )
        )
        assert reply.trailers["grpc-status"] == "0"
        assert resources_pb2.Message.FromString(reply.messages[0]).content == "after"
        async with asyncio.timeout(10):
            update = await anext(events)
    assert (update.update.kind, update.update.seq) == (chat_pb2.UPDATE_KIND_EDITED, sent.seq + 1)
    assert update.update.message.content == "after"
