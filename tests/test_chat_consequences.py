"""What a change of rights does to live streams: it ends them, at once."""

from __future__ import annotations

import grpc
from atomchat.v1 import channels_pb2, members_pb2, users_pb2

from tests.chat_support import chat, post, subscription
from tests.support import People, fails


async def test_blocking_a_user_ends_all_their_streams(people: People) -> None:
    owner, victim, bystander = await people.user(), await people.user(), await people.user()
    moderator = await people.moderator()
    first = await people.channel(owner, members=(victim, bystander))
    second = await people.channel(owner, members=(victim,))

    async with (
        chat(victim, first.id) as victim_first,
        subscription(victim, second.id) as victim_second,
        chat(bystander, first.id, history_limit=0) as bystander_first,
    ):
        await victim_second.until(lambda f: bool(f.of("joined")))
        await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=victim.id))
        for ended in (await victim_first.feed.until_ended(), await victim_second.until_ended()):
            assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
            assert ended.details() == "User is blocked"
        await post(owner, first.id, "still on")
        assert [m.content for m in await bystander_first.feed.until_messages(1)] == ["still on"]


async def test_removing_a_member_ends_their_streams_in_that_channel_only(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    other = await people.channel(owner, members=(member,))

    async with chat(member, channel.id) as removed, chat(member, other.id) as kept:
        await owner.api.members.RemoveMember(
            members_pb2.RemoveMemberRequest(channel_id=channel.id, user_id=member.id)
        )
        ended = await removed.feed.until_ended()
        assert ended.code() == grpc.StatusCode.PERMISSION_DENIED
        assert ended.details() == "You are not a member of this channel."
        await kept.send("still a member here", "k")
        await kept.ack("k")


async def test_leaving_a_channel_ends_the_leavers_streams(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with subscription(member, channel.id) as feed, chat(owner, channel.id) as owners:
        await feed.until(lambda f: bool(f.of("joined")))
        await member.api.members.LeaveChannel(
            members_pb2.LeaveChannelRequest(channel_id=channel.id)
        )
        ended = await feed.until_ended()
        assert ended.code() == grpc.StatusCode.PERMISSION_DENIED
        await owners.send("the owner stays", "k")
        await owners.ack("k")


async def test_a_removed_moderator_keeps_reading(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner, members=(moderator,))
    async with chat(moderator, channel.id, history_limit=0) as stream:
        await owner.api.members.RemoveMember(
            members_pb2.RemoveMemberRequest(channel_id=channel.id, user_id=moderator.id)
        )
        await post(owner, channel.id, "moderators read every channel")
        messages = await stream.feed.until_messages(1)
    assert messages[0].content == "moderators read every channel"


async def test_deleting_a_channel_ends_its_streams(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with chat(owner, channel.id) as owners, subscription(member, channel.id) as members:
        await members.until(lambda f: bool(f.of("joined")))
        await owner.api.channels.DeleteChannel(
            channels_pb2.DeleteChannelRequest(channel_id=channel.id)
        )
        for ended in (await owners.feed.until_ended(), await members.until_ended()):
            assert ended.code() == grpc.StatusCode.NOT_FOUND
            assert ended.details() == "Channel not found"


async def test_a_blocked_users_pending_sends_are_refused(people: People) -> None:
    owner, victim = await people.user(), await people.user()
    moderator = await people.moderator()
    channel = await people.channel(owner, members=(victim,))
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=victim.id))
    await fails(
        post(victim, channel.id, "let me in"),
        grpc.StatusCode.UNAUTHENTICATED,
        "Invalid authentication credentials",
    )
