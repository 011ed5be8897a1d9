"""Awareness and the inbox through Envoy: read markers, typing and presence over
JSON and server-sent events, and the inbox over SSE and grpc-web."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from atomchat.v1 import inbox_pb2

from tests.edge.edge_support import (
    GrpcWebFrames,
    bearer,
    error_reason,
    grpc_web_frame,
    grpc_web_headers,
    json_error,
    sse_events,
)
from tests.edge.test_timeline_edge import STREAM_TIMEOUT, next_event
from tests.support import People


async def test_read_markers_typing_and_presence_over_json_and_sse(
    http: httpx.AsyncClient, people: People
) -> None:
    owner, member = await people.user("json_aw"), await people.user("json_aw")
    channel = await people.channel(owner, members=(member,))
    auth, member_auth = bearer(owner.token), bearer(member.token)
    base = f"/v1/channels/{channel.id}"
    async with (
        http.stream(
            "GET",
            f"{base}/events",
            params={"history_limit": 0},
            headers=auth,
            timeout=STREAM_TIMEOUT,
        ) as watching,
        contextlib.aclosing(sse_events(watching)) as events,
    ):
        joined = await next_event(events)
        assert joined["joined"]["online_user_ids"] == [str(owner.id)]
        async with http.stream(
            "GET", f"{base}/events", headers=member_auth, timeout=STREAM_TIMEOUT
        ) as member_stream:
            assert member_stream.status_code == 200
            came = await next_event(events)
            assert came["presence"] == {
                "user_id": str(member.id),
                "username": member.username,
                "online": True,
            }
            typing = await http.post(f"{base}:typing", headers=member_auth)
            assert (typing.status_code, typing.json()) == (200, {})
            notice = (await next_event(events))["typing"]
            assert (notice["user_id"], notice["username"]) == (str(member.id), member.username)
            assert notice["expires_at"].endswith("Z")
            listed_members = (await http.get(f"{base}/members", headers=auth)).json()["members"]
            assert {m["user_id"]: m["online"] for m in listed_members} == {
                str(owner.id): True,
                str(member.id): True,
            }
        posted = await http.post(f"{base}/messages", json={"content": "one"}, headers=auth)
        assert posted.status_code == 200
        await http.post(f"{base}/messages", json={"content": "two"}, headers=auth)

    listed = (await http.get("/v1/users/me/channels", headers=member_auth)).json()
    (mine,) = [c for c in listed["channels"] if c["id"] == str(channel.id)]
    assert mine["last_seq"] == "2"
    assert mine["read_state"] == {
        "channel_id": str(channel.id),
        "last_read_seq": "0",
        "unread_count": 2,
        "mention_count": 0,
    }
    marked = await http.post(f"{base}:markRead", json={"seq": 1}, headers=member_auth)
    assert marked.status_code == 200, marked.text
    assert (marked.json()["last_read_seq"], marked.json()["unread_count"]) == ("1", 1)
    looked_up = await http.get("/v1/channels:lookup", params={"slug": channel.slug}, headers=auth)
    assert looked_up.json()["channel"]["read_state"]["unread_count"] == 0
    stranger = await people.user("json_aw")
    refused = await http.post(f"{base}:markRead", json={"seq": 1}, headers=bearer(stranger.token))
    assert refused.status_code == 403
    assert error_reason(json_error(refused)[2]) == "NOT_A_MEMBER"
    typing_refused = await http.post(f"{base}:typing", headers=bearer(stranger.token))
    assert typing_refused.status_code == 403


async def test_the_inbox_over_server_sent_events_resumes_after_an_id(
    http: httpx.AsyncClient, people: People
) -> None:
    owner, asker = await people.user("sse_inbox"), await people.user("sse_inbox")
    channel = await people.channel(owner)
    async with (
        http.stream(
            "GET", "/v1/users/me/events", headers=bearer(owner.token), timeout=STREAM_TIMEOUT
        ) as response,
        contextlib.aclosing(sse_events(response)) as events,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        requested = await http.post(
            f"/v1/channels/{channel.id}/join-requests", headers=bearer(asker.token)
        )
        assert requested.status_code == 200, requested.text
        event = await next_event(events)
    assert event["id"] == "1"
    assert event["join_request"]["join_request"]["user_id"] == str(asker.id)
    assert event["join_request"]["join_request"]["username"] == asker.username
    assert event["join_request"]["channel"]["name"] == channel.name
    await http.post(
        f"/v1/channels/{channel.id}/messages", json={"content": "x"}, headers=bearer(owner.token)
    )
    async with (
        http.stream(
            "GET",
            "/v1/users/me/events",
            params={"after_id": 0},
            headers=bearer(owner.token),
            timeout=STREAM_TIMEOUT,
        ) as again,
        contextlib.aclosing(sse_events(again)) as replay,
    ):
        assert (await next_event(replay))["id"] == "1"
    beyond = await http.get(
        "/v1/users/me/events", params={"after_id": 5}, headers=bearer(owner.token)
    )
    assert beyond.status_code == 400
    assert error_reason(json_error(beyond)[2]) == "AFTER_ID_BEYOND_LAST"
    anonymous = await http.get("/v1/users/me/events")
    assert anonymous.status_code == 401


async def inbox_events(response: httpx.Response) -> AsyncGenerator[inbox_pb2.InboxEvent]:
    frames = GrpcWebFrames()
    async for chunk in response.aiter_bytes():
        for flag, payload in frames.feed(chunk):
            assert flag == 0, "the stream ended"
            event = inbox_pb2.InboxEvent.FromString(payload)
            if not event.HasField("heartbeat"):
                yield event


async def test_the_inbox_over_grpc_web_carries_activity(
    http: httpx.AsyncClient, people: People
) -> None:
    owner, member = await people.user("web_inbox"), await people.user("web_inbox")
    channel = await people.channel(owner, members=(member,))
    request = inbox_pb2.StreamInboxRequest()
    async with (
        http.stream(
            "POST",
            "/atomchat.v1.InboxService/StreamInbox",
            content=grpc_web_frame(request.SerializeToString()),
            headers=grpc_web_headers(member.token),
            timeout=STREAM_TIMEOUT,
        ) as response,
        contextlib.aclosing(inbox_events(response)) as events,
    ):
        async with asyncio.timeout(10):
            added: Any = await anext(events)
            assert added.membership.change == inbox_pb2.MEMBERSHIP_CHANGE_ADDED
            await http.post(
                f"/v1/channels/{channel.id}/messages",
                json={"content": f"@{member.username} hi"},
                headers=bearer(owner.token),
            )
            first, second = await anext(events), await anext(events)
    by_kind = {event.WhichOneof("event"): event for event in (first, second)}
    assert by_kind["mention"].mention.message.content == f"@{member.username} hi"
    activity = by_kind["activity"].activity
    assert (activity.channel_id, activity.last_seq) == (channel.id, 1)
    assert (activity.read_state.unread_count, activity.read_state.mention_count) == (1, 1)
