"""ChatStream: joining, history then live, per-channel delivery, acks and idempotency."""

from __future__ import annotations

import asyncio

import grpc
from atomchat.v1 import channels_pb2, chat_pb2, members_pb2
from google.rpc import code_pb2

from tests.chat_support import chat, post, seqs
from tests.support import People, fails


async def test_member_gets_joined_then_last_ten_messages_oldest_first(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    sent = [await post(owner, channel.id, f"message {n}") for n in range(1, 13)]

    async with chat(owner, channel.id) as stream:
        history = await stream.feed.until_messages(10)

    assert stream.feed.frames[0].WhichOneof("frame") == "joined"
    assert stream.feed.frames[0].joined.channel.id == channel.id
    assert seqs(history) == [m.seq for m in sent[-10:]]
    assert [m.content for m in history] == [f"message {n}" for n in range(3, 13)]


async def test_history_limit_zero_gives_only_live_messages(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await post(owner, channel.id, "before")

    async with chat(owner, channel.id, history_limit=0) as stream:
        await post(owner, channel.id, "after")
        messages = await stream.feed.until_messages(1)

    assert [m.content for m in messages] == ["after"]


async def test_seeded_channel_history_as_a_member_sees_it(people: People) -> None:
    member = await people.login("user_program", "1234")
    async with chat(member, 1, history_limit=4, after_seq=0) as stream:
        history = await stream.feed.until_messages(4)
    assert [m.content for m in history[:4]] == [
        "Привет всем, я создал этот канал!",
        "Каковы ваши ожидания от этого канала?",
        "Спасибо за возможность присоединиться к каналу!",
        "Я уверен, что мы тут найдем много интересного!",
    ]
    assert [m.sender_username for m in history[:4]] == [
        "programmer_creator",
        "programmer_creator",
        "user_program",
        "user_program",
    ]


async def test_non_member_is_refused(people: People) -> None:
    owner, stranger = await people.user(), await people.user()
    channel = await people.channel(owner)
    async with chat(stranger, channel.id, wait_joined=False) as stream:
        error = await stream.feed.until_ended()
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "You are not a member of this channel."


async def test_moderator_may_join_without_being_a_member(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    async with chat(moderator, channel.id) as stream:
        await stream.send("moderated", "m1")
        ack = await stream.ack("m1")
    assert ack.message.sender_id == moderator.id


async def test_unknown_and_deleted_channels_are_not_found(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))
    for channel_id in (channel.id, 987_654_321):
        async with chat(owner, channel_id, wait_joined=False) as stream:
            error = await stream.feed.until_ended()
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "Channel not found"


async def test_first_frame_must_be_join(people: People) -> None:
    owner = await people.user()
    call = owner.api.chat.ChatStream()
    await call.write(chat_pb2.ChatStreamRequest(send=chat_pb2.ChatSend(content="hi")))
    failure = await fails(
        call.read(), grpc.StatusCode.INVALID_ARGUMENT, "The first frame must be join"
    )
    assert failure.reason == "JOIN_FIRST"


async def test_a_message_reaches_every_stream_of_its_channel_and_no_other(people: People) -> None:
    alice, bob, carol = await people.user(), await people.user(), await people.user()
    here = await people.channel(alice, members=(bob,))
    elsewhere = await people.channel(carol, members=(alice,))

    async with (
        chat(alice, here.id, history_limit=0) as alice_here,
        chat(bob, here.id, history_limit=0) as bob_here,
        chat(alice, elsewhere.id, history_limit=0) as alice_elsewhere,
        chat(carol, elsewhere.id, history_limit=0) as carol_elsewhere,
    ):
        await alice_here.send("for here only", "k1")
        await alice_here.ack("k1")
        await alice_elsewhere.send("for elsewhere only", "k2")
        await alice_elsewhere.ack("k2")
        for stream in (alice_here, bob_here):
            assert [m.content for m in await stream.feed.until_messages(1)] == ["for here only"]
        for stream in (alice_elsewhere, carol_elsewhere):
            messages = await stream.feed.until_messages(1)
            assert [m.content for m in messages] == ["for elsewhere only"]
        # A marker sent last arrives after anything that could have leaked.
        await post(alice, here.id, "marker")
        await post(carol, elsewhere.id, "marker")
        for stream in (alice_here, bob_here, alice_elsewhere, carol_elsewhere):
            await stream.feed.until_messages(2)
            assert len(stream.feed.messages()) == 2


async def test_send_is_acked_with_the_stored_message(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.send("  hello, world  ", "first")
        ack = await stream.ack("first")
        echoed = await stream.feed.until_messages(1)
    assert ack.message.content == "hello, world"
    assert ack.message.sender_username == owner.username
    assert ack.message.client_message_id == "first"
    assert ack.message.seq == 1
    assert echoed == [ack.message]


async def test_repeated_client_message_id_returns_the_original(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.send("once", "same-key")
        first = await stream.ack("same-key")
        await stream.send("twice?", "same-key")
        await stream.feed.until(lambda f: len(f.of("ack")) == 2)
        second = stream.feed.of("ack")[1]
        await stream.send("another", "other-key")
        await stream.ack("other-key")
        messages = await stream.feed.until_messages(2)
    assert second.message == first.message
    assert [m.content for m in messages] == ["once", "another"]
    assert seqs(messages) == [1, 2]


async def test_repeats_within_one_batch_post_once(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    results = await asyncio.gather(
        *(post(owner, channel.id, f"attempt {n}", "retry-key") for n in range(10))
    )
    assert len({m.id for m in results}) == 1
    page = await owner.api.chat.ListMessages(chat_pb2.ListMessagesRequest(channel_id=channel.id))
    assert len(page.messages) == 1


async def test_invalid_content_is_an_error_frame_and_the_stream_stays_usable(
    people: People,
) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.send("   \n\t ", "blank")
        blank = await stream.error("blank")
        await stream.send("x" * 4001, "long")
        long = await stream.error("long")
        await stream.send("x" * 4000, "longest")
        ack = await stream.ack("longest")
    assert blank.code == code_pb2.INVALID_ARGUMENT
    assert blank.message == "Message content must be 1-4000 characters after trimming"
    assert long.code == code_pb2.INVALID_ARGUMENT
    assert len(ack.message.content) == 4000


async def test_join_frame_after_joining_is_answered_with_an_error_frame(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.call.write(
            chat_pb2.ChatStreamRequest(join=chat_pb2.ChatJoin(channel_id=channel.id))
        )
        await stream.feed.until(lambda f: bool(f.of("error")))
        await stream.send("still here", "k")
        await stream.ack("k")
    assert stream.feed.of("error")[0].code == code_pb2.FAILED_PRECONDITION


async def test_max_batch_groups_messages_without_changing_order(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await asyncio.gather(*(post(owner, channel.id, f"m{n}") for n in range(30)))
    async with chat(owner, channel.id, after_seq=0, max_batch=8) as stream:
        messages = await stream.feed.until_messages(30)
    assert seqs(messages) == list(range(1, 31))
    assert stream.feed.of("messages"), "expected at least one batched frame"
    assert all(len(batch.messages) <= 8 for batch in stream.feed.of("messages"))


async def test_member_added_later_can_join(people: People) -> None:
    owner, newcomer = await people.user(), await people.user()
    channel = await people.channel(owner)
    await owner.api.members.AddMember(
        members_pb2.AddMemberRequest(channel_id=channel.id, user_id=newcomer.id)
    )
    async with chat(newcomer, channel.id) as stream:
        await stream.send("hi all", "k")
        await stream.ack("k")
