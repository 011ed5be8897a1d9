"""Frames put together as bytes (api/wire.py) are exactly what protobuf would write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def _expected_frames(message: MessageView) -> tuple[bytes, bytes]:
    """What protobuf writes for the message's own frame and for a batch of it alone."""
    body = convert.message(message)
    own = chat_pb2.ChatStreamResponse(message=body).SerializeToString()
    batch = chat_pb2.ChatStreamResponse(
        messages=chat_pb2.MessageBatch(messages=[body])
    ).SerializeToString()
    return own, batch


@pytest.mark.parametrize("ack_first", [True, False])
def test_a_post_is_serialised_once_for_its_ack_and_its_fan_out(
    ack_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _message("hello " * 30)
    expected_ack = chat_pb2.ChatStreamResponse(
        ack=chat_pb2.ChatAck(client_message_id="k-1", message=convert.message(message, 5))
    ).SerializeToString()
    own, batch = _expected_frames(message)
    built: list[MessageView] = []
    original = convert.message

    def counted(view: MessageView, viewer: int | None = None) -> Any:
        built.append(view)
        return original(view, viewer)

    monkeypatch.setattr(convert, "message", counted)
    if ack_first:
        ack = wire.ack_frame("k-1", message, 5)
        entry = wire.encode_entry(message)
    else:
        entry = wire.encode_entry(message)
        ack = wire.ack_frame("k-1", message, 5)
    assert built == [message]
    assert ack == expected_ack
    assert entry.frame == own
    assert entry.part is not None
    assert wire.batch_frame([entry.part]) == batch


def test_a_message_with_reactions_is_serialised_for_each_viewer() -> None:
    message = _message("hi", reactions=(ReactionView("👍", (5, 9)),))
    for viewer in (5, 7):
        frame = chat_pb2.ChatStreamResponse.FromString(wire.ack_frame("k-1", message, viewer))
        assert frame.ack.message.reactions[0].me is (viewer == 5)
    entry = wire.encode_entry(message)
    assert not chat_pb2.ChatStreamResponse.FromString(entry.frame).message.reactions[0].me
    assert chat_pb2.ChatStreamResponse.FromString(entry.frame_for(9)).message.reactions[0].me
