"""Frames put together as bytes (api/wire.py) are exactly what protobuf would write."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from atomchat.v1 import chat_pb2

from atomchat_server.api import convert, wire
from atomchat_server.domain.entities import MessageView, ReactionView

POSTED = datetime(2026, 12, 4, 21, 0, 0, 654321, tzinfo=UTC)


def _message(content: str, *, reactions: tuple[ReactionView, ...] = ()) -> MessageView:
    return MessageView(
        id=81,
        channel_id=3,
        seq=17,
        sender_id=5,
        sender_username="анна",
        content=content,
        created_at=POSTED,
        client_message_id="k-1",
        reply_to_id=80,
        mention_user_ids=(6,),
        reactions=reactions,
    )


@pytest.mark.parametrize("key", ["", "k-1", "ключ-ё", "x" * 300])
@pytest.mark.parametrize(
    "message",
    [
        _message("hello"),
        _message("привет " * 40),
        _message("", reactions=(ReactionView("👍", (5, 9)),)),
    ],
)
def test_an_ack_is_the_chat_ack_protobuf_writes(key: str, message: MessageView) -> None:
    expected = chat_pb2.ChatStreamResponse(
        ack=chat_pb2.ChatAck(client_message_id=key, message=convert.message(message, 5))
    ).SerializeToString()
    frame = wire.ack_frame(key, message, 5)
    assert frame == expected
    parsed = chat_pb2.ChatStreamResponse.FromString(frame)
    assert parsed.ack.client_message_id == key
    assert parsed.ack.message.seq == 17
