"""MemberService (SPEC §4): add, remove and list members; leave a channel."""

from __future__ import annotations

import grpc
from atomchat.v1 import members_pb2, users_pb2

from tests.support import People, Person, channel_by_id, fails, member_ids, my_channel_ids

NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_A_MEMBER = "You are not a member of this channel."


def add(channel_id: int, user_id: int) -> members_pb2.AddMemberRequest:
    return members_pb2.AddMemberRequest(channel_id=channel_id, user_id=user_id)


def remove(channel_id: int, user_id: int) -> members_pb2.RemoveMemberRequest:
    return members_pb2.RemoveMemberRequest(channel_id=channel_id, user_id=user_id)


async def count(reader: Person, channel_id: int) -> int:
    return (await channel_by_id(reader, channel_id)).member_count


# AddMember


async def test_owner_adds_a_member(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    member = await owner.api.members.AddMember(add(channel.id, user.id))
    assert (member.user_id, member.username, member.is_owner) == (user.id, user.username, False)
    assert member.HasField("joined_at")
    assert await count(owner, channel.id) == 2
    assert await member_ids(owner, channel.id) == [owner.id, user.id]
    assert await my_channel_ids(user) == [channel.id]


async def test_a_moderator_adds_a_member_to_any_channel(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    await moderator.api.members.AddMember(add(channel.id, user.id))
    assert await member_ids(owner, channel.id) == [owner.id, user.id]


async def test_adding_an_unknown_user_is_not_found(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.members.AddMember(add(channel.id, 10**12)), NOT_FOUND, "User not found"
    )
    assert failure.reason == "USER_NOT_FOUND"
    assert await count(owner, channel.id) == 1


async def test_adding_a_blocked_user_is_not_found(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    failure = await fails(
        owner.api.members.AddMember(add(channel.id, user.id)), NOT_FOUND, "User not found"
    )
    assert failure.reason == "USER_NOT_FOUND"
    assert await member_ids(owner, channel.id) == [owner.id]


async def test_adding_an_existing_member_is_already_exists(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner, members=(user,))
    for user_id in (user.id, owner.id):
        failure = await fails(
            owner.api.members.AddMember(add(channel.id, user_id)),
            grpc.StatusCode.ALREADY_EXISTS,
            "User is already a member of this channel",
        )
        assert failure.reason == "ALREADY_MEMBER"
    assert await count(owner, channel.id) == 2


async def test_adding_to_an_unknown_channel_is_not_found(people: People) -> None:
    owner, user = await people.user(), await people.user()
    failure = await fails(
        owner.api.members.AddMember(add(10**12, user.id)), NOT_FOUND, "Channel not found"
    )
    assert failure.reason == "CHANNEL_NOT_FOUND"


async def test_members_who_are_not_the_owner_cannot_add(people: People) -> None:
    owner, member, user = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    for person in (member, user):
        failure = await fails(
            person.api.members.AddMember(add(channel.id, user.id)),
            DENIED,
            "Not enough permissions",
        )
        assert failure.reason == "CHANNEL_OWNER_REQUIRED"
    assert await member_ids(owner, channel.id) == [owner.id, member.id]


# RemoveMember


async def test_owner_removes_a_member(people: People) -> None:
    owner, first, second = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(first, second))
    await owner.api.members.RemoveMember(remove(channel.id, first.id))
    assert await count(owner, channel.id) == 2
    assert await member_ids(owner, channel.id) == [owner.id, second.id]
    assert await my_channel_ids(first) == []


async def test_a_removed_member_can_no_longer_list_members(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await owner.api.members.RemoveMember(remove(channel.id, member.id))
    await fails(
        member.api.members.ListMembers(members_pb2.ListMembersRequest(channel_id=channel.id)),
        DENIED,
        NOT_A_MEMBER,
    )


async def test_a_moderator_removes_a_member(people: People) -> None:
    owner, member, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner, members=(member,))
    await moderator.api.members.RemoveMember(remove(channel.id, member.id))
    assert await member_ids(owner, channel.id) == [owner.id]


async def test_the_owner_cannot_be_removed(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    for person in (owner, moderator):
        failure = await fails(
            person.api.members.RemoveMember(remove(channel.id, owner.id)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "You cannot remove the channel owner",
        )
        assert failure.reason == "CANNOT_REMOVE_OWNER"
    assert await member_ids(owner, channel.id) == [owner.id]


async def test_removing_a_non_member_is_not_found(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    for user_id in (user.id, 10**12):
        failure = await fails(
            owner.api.members.RemoveMember(remove(channel.id, user_id)),
            NOT_FOUND,
            "User is not a member of this channel",
        )
        assert failure.reason == "MEMBER_NOT_FOUND"
    assert await count(owner, channel.id) == 1


async def test_members_who_are_not_the_owner_cannot_remove(people: People) -> None:
    owner, first, second = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(first, second))
    failure = await fails(
        first.api.members.RemoveMember(remove(channel.id, second.id)),
        DENIED,
        "Not enough permissions",
    )
    assert failure.reason == "CHANNEL_OWNER_REQUIRED"
    assert await member_ids(owner, channel.id) == [owner.id, first.id, second.id]


async def test_removing_from_an_unknown_channel_is_not_found(people: People) -> None:
    owner, user = await people.user(), await people.user()
    await fails(owner.api.members.RemoveMember(remove(10**12, user.id)), NOT_FOUND)


# ListMembers


async def test_a_member_lists_members_owner_first_then_in_joining_order(people: People) -> None:
    owner, first, second = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(first, second))
    response = await second.api.members.ListMembers(
        members_pb2.ListMembersRequest(channel_id=channel.id)
    )
    assert [(m.user_id, m.username, m.is_owner) for m in response.members] == [
        (owner.id, owner.username, True),
        (first.id, first.username, False),
        (second.id, second.username, False),
    ]
    assert response.next_page_token == ""


async def test_a_moderator_who_is_not_a_member_lists_members(people: People) -> None:
    owner, moderator = await people.user(), await people.moderator()
    channel = await people.channel(owner)
    assert await member_ids(moderator, channel.id) == [owner.id]


async def test_a_non_member_cannot_list_members(people: People) -> None:
    owner, outsider = await people.user(), await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        outsider.api.members.ListMembers(members_pb2.ListMembersRequest(channel_id=channel.id)),
        DENIED,
        NOT_A_MEMBER,
    )
    assert failure.reason == "NOT_A_MEMBER"


async def test_members_come_in_pages_owner_first(people: People) -> None:
    owner = await people.user()
    others = [await people.user() for _ in range(3)]
    channel = await people.channel(owner, members=tuple(others))
    pages = []
    token = ""
    while True:
        page = await owner.api.members.ListMembers(
            members_pb2.ListMembersRequest(channel_id=channel.id, page_size=2, page_token=token)
        )
        pages.append([m.user_id for m in page.members])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[owner.id, others[0].id], [others[1].id, others[2].id]]


async def test_a_page_of_only_the_owner_continues_with_the_others(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    first = await owner.api.members.ListMembers(
        members_pb2.ListMembersRequest(channel_id=channel.id, page_size=1)
    )
    assert [m.user_id for m in first.members] == [owner.id]
    second = await owner.api.members.ListMembers(
        members_pb2.ListMembersRequest(
            channel_id=channel.id, page_size=1, page_token=first.next_page_token
        )
    )
    assert [m.user_id for m in second.members] == [member.id]
    assert second.next_page_token == ""


async def test_list_members_refuses_a_bad_page_token(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    await fails(
        owner.api.members.ListMembers(
            members_pb2.ListMembersRequest(channel_id=channel.id, page_token="bogus")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Invalid page token",
    )


async def test_listing_members_of_an_unknown_channel_is_not_found(people: People) -> None:
    moderator = await people.moderator()
    await fails(
        moderator.api.members.ListMembers(members_pb2.ListMembersRequest(channel_id=10**12)),
        NOT_FOUND,
        "Channel not found",
    )


# LeaveChannel


async def test_a_member_leaves_a_channel(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await member.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=channel.id))
    assert await my_channel_ids(member) == []
    assert await member_ids(owner, channel.id) == [owner.id]
    assert await count(owner, channel.id) == 1


async def test_the_owner_cannot_leave(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=channel.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "The channel owner cannot leave the channel",
    )
    assert failure.reason == "OWNER_CANNOT_LEAVE"
    assert await my_channel_ids(owner) == [channel.id]


async def test_a_non_member_cannot_leave(people: People) -> None:
    owner, outsider, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    for person in (outsider, moderator):
        failure = await fails(
            person.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=channel.id)),
            DENIED,
            NOT_A_MEMBER,
        )
        assert failure.reason == "NOT_A_MEMBER"
    assert await count(owner, channel.id) == 1


async def test_leaving_an_unknown_channel_is_not_found(people: People) -> None:
    user = await people.user()
    await fails(
        user.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=10**12)),
        NOT_FOUND,
        "Channel not found",
    )
