"""The timeline (SPEC §7): edits, deletions, reactions, replies and mentions, each
change taking the channel's next seq, in one order every stream sees."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from atomchat.v1 import channels_pb2, chat_pb2, members_pb2, resources_pb2

from devsupport import serve_atomchat
from tests.chat_support import Feed, chat, post, subscription
from tests.conftest import TEST_SETTINGS, Dial
from tests.support import People, Person, fails, sql

EDITED, DELETED, REACTIONS = (
    chat_pb2.UPDATE_KIND_EDITED,
    chat_pb2.UPDATE_KIND_DELETED,
    chat_pb2.UPDATE_KIND_REACTIONS,
)


async def edit(person: Person, message: resources_pb2.Message, content: str) -> Any:
    return await person.api.chat.EditMessage(
        chat_pb2.EditMessageRequest(
            channel_id=message.channel_id, message_id=message.id, content=content
        )
    )


async def delete(person: Person, message: resources_pb2.Message) -> Any:
    return await person.api.chat.DeleteMessage(
        chat_pb2.DeleteMessageRequest(channel_id=message.channel_id, message_id=message.id)
    )


async def react(person: Person, message: resources_pb2.Message, emoji: str) -> Any:
    return await person.api.chat.AddReaction(
        chat_pb2.AddReactionRequest(
            channel_id=message.channel_id, message_id=message.id, emoji=emoji
        )
    )


async def unreact(person: Person, message: resources_pb2.Message, emoji: str) -> Any:
    return await person.api.chat.RemoveReaction(
        chat_pb2.RemoveReactionRequest(
            channel_id=message.channel_id, message_id=message.id, emoji=emoji
        )
    )


async def get(person: Person, message: resources_pb2.Message) -> Any:
    return await person.api.chat.GetMessage(
        chat_pb2.GetMessageRequest(channel_id=message.channel_id, message_id=message.id)
    )


async def last_seq(database_url: str, channel_id: int) -> int:
    rows = await sql(database_url, "SELECT last_seq FROM channels WHERE id = $1", channel_id)
    return int(rows[0]["last_seq"])


def timeline(feed: Feed) -> list[tuple[int, str, int]]:
    """(seq, what, message id) of every message and update a stream received."""
    found: list[tuple[int, str, int]] = []
    for frame in feed.frames:
        kind = frame.WhichOneof("frame" if hasattr(frame, "ack") else "event")
        if kind == "message":
            found.append((frame.message.seq, "message", frame.message.id))
        elif kind == "messages":
            found.extend((m.seq, "message", m.id) for m in frame.messages.messages)
        elif kind == "update":
            name = chat_pb2.UpdateKind.Name(frame.update.kind)
            found.append((frame.update.seq, name, frame.update.message.id))
    return found


def reactions(message: resources_pb2.Message) -> list[tuple[str, int, bool]]:
    return [(r.emoji, r.count, r.me) for r in message.reactions]


# Editing


async def test_the_author_edits_and_streams_get_an_update_with_the_next_seq(
    people: People, database_url: str
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with subscription(member, channel.id, history_limit=0) as feed:
        original = await post(owner, channel.id, "helo")
        edited = await edit(owner, original, "  hello  ")
        assert (edited.id, edited.seq, edited.content) == (original.id, original.seq, "hello")
        assert edited.HasField("edited_at")
        await feed.until(lambda f: len(timeline(f)) == 2)
    assert timeline(feed) == [
        (1, "message", original.id),
        (2, "UPDATE_KIND_EDITED", original.id),
    ]
    update = feed.of("update")[0]
    assert (update.message.content, update.message.seq) == ("hello", 1)
    assert await last_seq(database_url, channel.id) == 2
    again = await get(member, original)
    assert (again.content, again.HasField("edited_at")) == ("hello", True)


async def test_only_the_author_edits_and_not_once_deleted_or_removed(people: People) -> None:
    owner, member, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner, members=(member,))
    mine = await post(member, channel.id, "mine")
    for other in (owner, moderator):
        failure = await fails(edit(other, mine, "theirs"), grpc.StatusCode.PERMISSION_DENIED)
        assert failure.reason == "NOT_THE_AUTHOR"
    failure = await fails(edit(member, mine, "   "), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.reason == "INVALID_CONTENT"
    await owner.api.members.RemoveMember(
        members_pb2.RemoveMemberRequest(channel_id=channel.id, user_id=member.id)
    )
    failure = await fails(edit(member, mine, "still mine?"), grpc.StatusCode.PERMISSION_DENIED)
    assert failure.reason == "NOT_A_MEMBER"
    owned = await post(owner, channel.id, "to be deleted")
    await delete(owner, owned)
    failure = await fails(edit(owner, owned, "back"), grpc.StatusCode.FAILED_PRECONDITION)
    assert failure.reason == "MESSAGE_DELETED"


async def test_a_message_of_another_channel_or_none_at_all_is_not_found(people: People) -> None:
    owner = await people.user()
    here, there = await people.channel(owner), await people.channel(owner)
    message = await post(owner, there.id, "over there")
    misplaced = resources_pb2.Message(id=message.id, channel_id=here.id)
    await fails(edit(owner, misplaced, "x"), grpc.StatusCode.NOT_FOUND)
    await fails(get(owner, misplaced), grpc.StatusCode.NOT_FOUND)
    await fails(
        get(owner, resources_pb2.Message(id=10**12, channel_id=here.id)),
        grpc.StatusCode.NOT_FOUND,
    )


# Deleting


async def test_author_owner_and_moderator_delete_leaving_a_named_tombstone(
    people: People, database_url: str
) -> None:
    owner, member, other = await people.user(), await people.user(), await people.user()
    moderator = await people.moderator()
    channel = await people.channel(owner, members=(member, other))
    by_author, by_owner, by_moderator = [
        await post(member, channel.id, f"message {n}") for n in range(3)
    ]
    failure = await fails(delete(other, by_author), grpc.StatusCode.PERMISSION_DENIED)
    assert failure.reason == "NOT_THE_AUTHOR"
    for deleter, message in ((member, by_author), (owner, by_owner), (moderator, by_moderator)):
        tombstone = await delete(deleter, message)
        assert (tombstone.id, tombstone.seq, tombstone.deleted) == (message.id, message.seq, True)
        assert (tombstone.content, tombstone.deleted_by) == ("", deleter.id)
    seq = await last_seq(database_url, channel.id)
    assert seq == 6
    again = await delete(owner, by_author)
    assert (again.deleted, again.deleted_by) == (True, member.id)
    assert await last_seq(database_url, channel.id) == seq, "deleting twice is no new event"
    listed = await owner.api.chat.ListMessages(chat_pb2.ListMessagesRequest(channel_id=channel.id))
    assert [(m.seq, m.deleted, m.content) for m in listed.messages] == [
        (3, True, ""),
        (2, True, ""),
        (1, True, ""),
    ]


async def test_a_deleted_channels_messages_are_found_by_no_one(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    message = await post(owner, channel.id, "gone with the channel")
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))
    for person in (owner, moderator):
        await fails(get(person, message), grpc.StatusCode.NOT_FOUND)


# Reactions


async def test_reactions_count_say_me_and_keep_the_order_of_first_use(
    people: People, database_url: str
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    message = await post(owner, channel.id, "react to me")
    assert reactions(await react(member, message, "👍")) == [("👍", 1, True)]
    assert reactions(await react(owner, message, ":tada:")) == [
        ("👍", 1, False),
        (":tada:", 1, True),
    ]
    assert reactions(await react(owner, message, "👍")) == [("👍", 2, True), (":tada:", 1, True)]
    seq = await last_seq(database_url, channel.id)
    assert reactions(await react(owner, message, "👍")) == [("👍", 2, True), (":tada:", 1, True)]
    assert await last_seq(database_url, channel.id) == seq, "reacting twice is no event"
    assert reactions(await unreact(member, message, "👍")) == [
        ("👍", 1, False),
        (":tada:", 1, False),
    ]
    assert reactions(await unreact(member, message, "👍")) == [
        ("👍", 1, False),
        (":tada:", 1, False),
    ]
    assert reactions(await unreact(owner, message, ":tada:")) == [("👍", 1, True)]
    assert await last_seq(database_url, channel.id) == seq + 2
    listed = await member.api.chat.ListMessages(chat_pb2.ListMessagesRequest(channel_id=channel.id))
    assert reactions(listed.messages[0]) == [("👍", 1, False)]


async def test_each_stream_sees_its_own_reactions_as_me(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    message = await post(owner, channel.id, "watch the reactions")
    async with (
        subscription(owner, channel.id, after_seq=message.seq) as owners,
        chat(member, channel.id, after_seq=message.seq) as members,
    ):
        await react(member, message, "❤️")
        for feed in (owners, members.feed):
            await feed.until(lambda f: bool(f.of("update")))
    assert reactions(owners.of("update")[0].message) == [("❤️", 1, False)]
    assert reactions(members.feed.of("update")[0].message) == [("❤️", 1, True)]
    async with subscription(member, channel.id, history_limit=1) as history:
        await history.until(lambda f: bool(f.messages()))
    assert reactions(history.messages()[0]) == [("❤️", 1, True)]


@pytest.mark.parametrize(
    "emoji",
    ["", "a", "1", "👍👍", ":Big:", ":spaces here:", "x" * 20, "\u200d", ":" + "a" * 33 + ":"],
)
async def test_a_reaction_must_be_one_emoji_or_a_name(people: People, emoji: str) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    message = await post(owner, channel.id, "hi")
    failure = await fails(react(owner, message, emoji), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.reason == "INVALID_EMOJI"


async def test_at_most_twenty_different_reactions_and_none_on_a_tombstone(
    people: People,
) -> None:
    owner, outsider = await people.user(), await people.user()
    channel = await people.channel(owner)
    message = await post(owner, channel.id, "popular")
    for number in range(20):
        await react(owner, message, f":r{number}:")
    failure = await fails(react(owner, message, ":r20:"), grpc.StatusCode.FAILED_PRECONDITION)
    assert failure.reason == "TOO_MANY_REACTIONS"
    await unreact(owner, message, ":r0:")
    await react(owner, message, ":r20:")
    await fails(react(outsider, message, ":r1:"), grpc.StatusCode.PERMISSION_DENIED)
    await delete(owner, message)
    failure = await fails(react(owner, message, ":r1:"), grpc.StatusCode.FAILED_PRECONDITION)
    assert failure.reason == "MESSAGE_DELETED"


# Replies and mentions


async def test_a_reply_names_a_message_of_the_same_channel_even_a_deleted_one(
    people: People,
) -> None:
    owner = await people.user()
    channel, other = await people.channel(owner), await people.channel(owner)
    question = await post(owner, channel.id, "question?")
    elsewhere = await post(owner, other.id, "elsewhere")
    answer = await owner.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(
            channel_id=channel.id, content="answer", reply_to_id=question.id
        )
    )
    assert answer.reply_to_id == question.id
    for target in (elsewhere.id, 10**12, -1):
        failure = await fails(
            owner.api.chat.SendMessage(
                chat_pb2.SendMessageRequest(channel_id=channel.id, content="x", reply_to_id=target)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert failure.reason == "BAD_REPLY_TARGET"
    await delete(owner, question)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.call.write(
            chat_pb2.ChatStreamRequest(
                send=chat_pb2.ChatSend(
                    content="late answer", client_message_id="r", reply_to_id=question.id
                )
            )
        )
        ack = await stream.ack("r")
    assert ack.message.reply_to_id == question.id


async def test_mentions_name_members_and_moderators_at_post_and_edit_time(people: People) -> None:
    owner, member, outsider = await people.user(), await people.user(), await people.user()
    moderator = await people.moderator()
    channel = await people.channel(owner, members=(member,))
    text = f"hi @{member.username}, @{outsider.username} and @{moderator.username.upper()}!"
    message = await post(owner, channel.id, text)
    assert list(message.mention_user_ids) == [member.id, moderator.id]
    edited = await edit(owner, message, f"only @{outsider.username} and mail@{member.username}")
    assert list(edited.mention_user_ids) == []
    await owner.api.members.AddMember(
        members_pb2.AddMemberRequest(channel_id=channel.id, user_id=outsider.id)
    )
    edited = await edit(owner, message, f"now @{outsider.username} @{outsider.username}")
    assert list(edited.mention_user_ids) == [outsider.id]


# One ordered timeline


async def test_posts_and_changes_from_many_clients_reach_every_stream_in_one_gap_free_order(
    people: People, database_url: str
) -> None:
    owner = await people.user()
    writers = [await people.user() for _ in range(4)]
    channel = await people.channel(owner, members=tuple(writers))
    seed = await post(owner, channel.id, "seed")

    async def busy(writer: Person, number: int) -> None:
        mine = await post(writer, channel.id, f"{number} first")
        await react(writer, seed, "👍")
        await edit(writer, mine, f"{number} edited")
        await react(owner, mine, ":ok:")
        await post(writer, channel.id, f"{number} second")
        await delete(writer, mine)
        await unreact(writer, seed, "👍")

    async with (
        subscription(owner, channel.id, history_limit=0, max_batch=50) as batched,
        chat(writers[0], channel.id, history_limit=0) as plain,
    ):
        await asyncio.gather(*(busy(writer, n) for n, writer in enumerate(writers)))
        total = await last_seq(database_url, channel.id)
        for feed in (batched, plain.feed):
            await feed.until(lambda f: len(timeline(f)) >= total - 1)
    assert total == 1 + 4 * 7
    for feed in (batched, plain.feed):
        assert [seq for seq, _, _ in timeline(feed)] == list(range(2, total + 1))
    async with subscription(owner, channel.id, after_seq=0) as resumed:
        await resumed.until(lambda f: len(timeline(f)) >= total)
    assert timeline(resumed) == [(1, "message", seed.id), *timeline(batched)]


async def test_changes_made_through_another_process_reach_streams_here_in_order(
    people: People, database_url: str, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with (
        serve_atomchat(
            database_url=database_url, ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret
        ) as other,
        subscription(owner, channel.id, history_limit=0) as here,
    ):
        remote = await dial(other.grpc_port, member)
        first = await post(remote, channel.id, "from over there")
        await edit(remote, first, "edited over there")
        await react(remote, first, "🔥")
        await delete(owner, first)
        await here.until(lambda f: len(timeline(f)) == 4)
        async with subscription(remote, channel.id, after_seq=0) as there:
            await there.until(lambda f: len(timeline(f)) == 4)
    expected = [
        (1, "message", first.id),
        (2, "UPDATE_KIND_EDITED", first.id),
        (3, "UPDATE_KIND_REACTIONS", first.id),
        (4, "UPDATE_KIND_DELETED", first.id),
    ]
    assert timeline(here) == expected
    assert timeline(there) == expected
    edited = here.of("update")[0].message
    assert (edited.content, edited.deleted) == ("edited over there", False)
    assert [u.message.deleted for u in there.of("update")] == [True, True, True]
