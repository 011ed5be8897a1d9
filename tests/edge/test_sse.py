"""GET /v1/channels/{id}/events: Subscribe as server-sent events through Envoy."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from atomchat.v1 import chat_pb2

from tests.edge.edge_support import bearer, json_error, sse_events
from tests.support import People

STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)


async def next_event(events: Any) -> dict[str, Any]:
    """The next event that is not a heartbeat."""
    async with asyncio.timeout(10):
        while True:
            event: dict[str, Any] = await anext(events)
            if "heartbeat" not in event:
                return event


async def test_an_http_client_receives_history_and_a_message_sent_over_grpc(
    http: httpx.AsyncClient, people: People
) -> None:
    owner = await people.user("sse_owner")
    reader = await people.user("sse_reader")
    channel = await people.channel(owner, members=(reader,))
    before = []
    for text in ("one", "two"):
        before.append(
            await owner.api.chat.SendMessage(
                chat_pb2.SendMessageRequest(channel_id=channel.id, content=text)
            )
        )

    async with (
        http.stream(
            "GET",
            f"/v1/channels/{channel.id}/events",
            params={"after_seq": before[0].seq},
            headers=bearer(reader.token),
            timeout=STREAM_TIMEOUT,
        ) as response,
        contextlib.aclosing(sse_events(response)) as events,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        joined = await next_event(events)
        assert joined["joined"]["channel"]["id"] == str(channel.id)
        history = await next_event(events)
        assert (history["message"]["content"], history["message"]["seq"]) == (
            "two",
            str(before[1].seq),
        )

        sent = await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(
                channel_id=channel.id, content="Привет over SSE", client_message_id="sse-1"
            )
        )
        live = (await next_event(events))["message"]
        assert live == {
            "id": str(sent.id),
            "channel_id": str(channel.id),
            "seq": str(sent.seq),
            "sender_id": str(owner.id),
            "sender_username": owner.username,
            "content": "Привет over SSE",
            "created_at": live["created_at"],
            "client_message_id": "sse-1",
            "deleted": False,
            "deleted_by": "0",
            "reply_to_id": "0",
            "reactions": [],
            "mention_user_ids": [],
        }


async def test_every_event_is_one_data_line(http: httpx.AsyncClient, people: People) -> None:
    owner = await people.user("sse_lines")
    channel = await people.channel(owner, description="a\nmulti-line\ndescription")
    async with (
        http.stream(
            "GET",
            f"/v1/channels/{channel.id}/events",
            headers=bearer(owner.token),
            timeout=STREAM_TIMEOUT,
        ) as response,
    ):
        lines = response.aiter_lines()
        async with asyncio.timeout(10):
            first = await anext(lines)
            second = await anext(lines)
        assert first.startswith('data: {"joined":')
        assert '"description":"a\\nmulti-line\\ndescription"' in first
        assert second == ""


async def test_a_stream_refused_before_its_first_event_is_a_json_error(
    http: httpx.AsyncClient, people: People
) -> None:
    owner = await people.user("sse_closed")
    outsider = await people.user("sse_outsider")
    channel = await people.channel(owner)
    response = await http.get(f"/v1/channels/{channel.id}/events", headers=bearer(outsider.token))
    assert response.status_code == 403
    assert json_error(response)[:2] == (7, "You are not a member of this channel.")
