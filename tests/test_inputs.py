"""Inputs a parser accepts but a reader should not: text with nothing to see,
names with invisible characters, oversized credentials, positions past the end."""

from __future__ import annotations

import grpc
import pytest
from atomchat.v1 import channels_pb2, chat_pb2, users_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.chat_support import chat, post, subscription
from tests.support import People, fails, unique


@pytest.mark.parametrize(
    "content",
    ["\u200b", "\u200b\u200c\u200d\u2060", "\u3164\u3164", "\u2800", "\u202e \u202c", "\u00ad"],
    ids=["zero-width-space", "joiners", "hangul-filler", "braille-blank", "bidi", "soft-hyphen"],
)
async def test_a_message_with_nothing_visible_is_invalid(people: People, content: str) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content=content)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.reason == "INVALID_CONTENT"
    stored = await post(owner, channel.id, "a\u200bb")  # invisible characters among visible ones
    assert stored.content == "a\u200bb"


@pytest.mark.parametrize(
    "character",
    ["\u202e", "\u2066", "\u2069", "\u0085", "\u009b", "\u200b"],
    ids=["RLO", "LRI", "PDI", "NEL", "CSI", "ZWSP"],
)
async def test_a_channel_name_with_a_control_or_format_character_is_invalid(
    people: People, character: str
) -> None:
    owner = await people.user()
    failure = await fails(
        owner.api.channels.CreateChannel(
            channels_pb2.CreateChannelRequest(name=f"news{character}{unique('')}")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.reason == "INVALID_NAME"


@pytest.mark.parametrize("size", [129, 5000, 1 << 20])
async def test_a_login_password_longer_than_any_can_be_is_invalid_argument(
    people: People, size: int
) -> None:
    failure = await fails(
        people.anonymous.users.Login(
            users_pb2.LoginRequest(username="moderator", password="x" * size)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert failure.reason == "INVALID_CREDENTIALS_FORMAT"


def last_seq_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.metadata["last_seq"]
    raise AssertionError("no ErrorInfo")


async def test_resuming_after_a_seq_beyond_the_last_is_out_of_range(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    for n in range(3):
        await post(owner, channel.id, f"message {n}")
    async with chat(owner, channel.id, wait_joined=False, after_seq=7) as stream:
        ended = await stream.feed.until_ended()
    assert ended.code() == grpc.StatusCode.OUT_OF_RANGE
    assert last_seq_of(ended) == "3"
    async with subscription(owner, channel.id, after_seq=4) as feed:
        ended = await feed.until_ended()
    assert ended.code() == grpc.StatusCode.OUT_OF_RANGE
    assert last_seq_of(ended) == "3"
    async with chat(owner, channel.id, after_seq=3) as stream:
        await stream.send("resumed at the end", "k")
        ack = await stream.ack("k")
    assert ack.message.seq == 4
