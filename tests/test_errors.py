"""How failures reach clients beyond the domain's own errors (api/status.py)."""

from __future__ import annotations

import grpc
from atomchat.v1 import chat_pb2

from tests.support import People, fails


async def test_text_the_database_cannot_store_is_invalid_argument_not_internal(
    people: People,
) -> None:
    """A NUL character that gets past validation is still the client's mistake."""
    owner = await people.user()
    channel = await people.channel(owner)
    await fails(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="nul \x00 inside")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await fails(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(
                channel_id=channel.id, content="ok", client_message_id="\x00"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
