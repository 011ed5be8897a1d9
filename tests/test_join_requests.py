"""JoinRequestService (SPEC §4): ask to join, see, list (a channel's, or one's
own), accept and decline; every request names its requester."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from atomchat.v1 import (
    channels_pb2,
    join_requests_pb2,
    members_pb2,
    resources_pb2,
    users_pb2,
)

from tests.support import (
    People,
    Person,
    all_pages,
    channel_by_id,
    fails,
    member_ids,
    my_channel_ids,
)

PENDING = resources_pb2.JOIN_REQUEST_STATUS_PENDING
ACCEPTED = resources_pb2.JOIN_REQUEST_STATUS_ACCEPTED
REJECTED = resources_pb2.JOIN_REQUEST_STATUS_REJECTED
NO_STATUS = resources_pb2.JOIN_REQUEST_STATUS_UNSPECIFIED  # the server reads it as PENDING
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def ask(person: Person, channel_id: int) -> resources_pb2.JoinRequest:
    request: resources_pb2.JoinRequest = await person.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel_id)
    )
    return request


async def accept(person: Person, request_id: int) -> resources_pb2.JoinRequest:
    decided: resources_pb2.JoinRequest = await person.api.join_requests.AcceptJoinRequest(
        join_requests_pb2.AcceptJoinRequestRequest(request_id=request_id)
    )
    return decided


async def decline(person: Person, request_id: int) -> resources_pb2.JoinRequest:
    decided: resources_pb2.JoinRequest = await person.api.join_requests.DeclineJoinRequest(
        join_requests_pb2.DeclineJoinRequestRequest(request_id=request_id)
    )
    return decided


async def get(person: Person, request_id: int) -> resources_pb2.JoinRequest:
    found: resources_pb2.JoinRequest = await person.api.join_requests.GetJoinRequest(
        join_requests_pb2.GetJoinRequestRequest(request_id=request_id)
    )
    return found


async def listed(
    person: Person,
    channel_id: int,
    status: resources_pb2.JoinRequestStatus.ValueType = NO_STATUS,
    page_size: int = 0,
) -> list[resources_pb2.JoinRequest]:
    async def fetch(token: str) -> Any:
        return await person.api.join_requests.ListJoinRequests(
            join_requests_pb2.ListJoinRequestsRequest(
                channel_id=channel_id, status=status, page_size=page_size, page_token=token
            )
        )

    requests, _ = await all_pages(fetch, "join_requests")
    return requests


async def mine(
    person: Person,
    status: resources_pb2.JoinRequestStatus.ValueType = NO_STATUS,
    page_size: int = 0,
) -> list[resources_pb2.JoinRequest]:
    async def fetch(token: str) -> Any:
        return await person.api.join_requests.ListMyJoinRequests(
            join_requests_pb2.ListMyJoinRequestsRequest(
                status=status, page_size=page_size, page_token=token
            )
        )

    requests, _ = await all_pages(fetch, "join_requests")
    return requests


# CreateJoinRequest


async def test_a_user_asks_to_join_and_the_request_is_pending(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    assert request.id > 1
    assert (request.channel_id, request.user_id, request.status) == (channel.id, user.id, PENDING)
    assert request.username == user.username
    assert request.HasField("created_at")
    assert not request.HasField("decided_at")
    assert request.decided_by == 0


async def test_a_user_may_ask_to_join_many_channels_one_after_another(people: People) -> None:
    """More calls than the server's connections times PostgreSQL's custom-plan runs (5)."""
    owner, user = await people.user(), await people.user()
    channels = await asyncio.gather(*(people.channel(owner) for _ in range(130)))
    for channel in channels:
        request = await ask(user, channel.id)
        assert request.status == PENDING


async def test_asking_to_join_an_unknown_channel_is_not_found(people: People) -> None:
    user = await people.user()
    failure = await fails(
        user.api.join_requests.CreateJoinRequest(
            join_requests_pb2.CreateJoinRequestRequest(channel_id=10**12)
        ),
        NOT_FOUND,
        "Channel not found",
    )
    assert failure.reason == "CHANNEL_NOT_FOUND"


async def test_a_member_asking_to_join_is_already_exists(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    for person in (member, owner):
        failure = await fails(
            person.api.join_requests.CreateJoinRequest(
                join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "User is already a member of this channel",
        )
        assert failure.reason == "ALREADY_MEMBER"


async def test_a_second_request_while_one_is_pending_is_already_exists(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    first = await ask(user, channel.id)
    failure = await fails(
        user.api.join_requests.CreateJoinRequest(
            join_requests_pb2.CreateJoinRequestRequest(channel_id=channel.id)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "Join request already exists",
    )
    assert failure.reason == "JOIN_REQUEST_PENDING"
    assert [r.id for r in await listed(owner, channel.id)] == [first.id]


async def test_after_a_rejection_a_new_request_may_be_made(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    first = await ask(user, channel.id)
    await decline(owner, first.id)
    second = await ask(user, channel.id)
    assert second.id != first.id
    assert second.status == PENDING


async def test_after_leaving_a_new_request_may_be_made(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    await accept(owner, (await ask(user, channel.id)).id)
    await user.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=channel.id))
    again = await ask(user, channel.id)
    assert again.status == PENDING


# GetJoinRequest


async def test_the_requester_the_owner_and_a_moderator_see_a_request(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    for person in (user, owner, moderator):
        seen = await get(person, request.id)
        assert (seen.id, seen.user_id, seen.username, seen.channel_id, seen.status) == (
            request.id,
            user.id,
            user.username,
            channel.id,
            PENDING,
        )


async def test_others_are_told_a_request_does_not_exist(people: People) -> None:
    owner, user, member = await people.user(), await people.user(), await people.user()
    stranger = await people.user()
    channel = await people.channel(owner, members=(member,))
    request = await ask(user, channel.id)
    for person in (stranger, member):
        failure = await fails(
            person.api.join_requests.GetJoinRequest(
                join_requests_pb2.GetJoinRequestRequest(request_id=request.id)
            ),
            NOT_FOUND,
            "Join request not found",
        )
        assert failure.reason == "JOIN_REQUEST_NOT_FOUND"


async def test_an_unknown_request_is_not_found(people: People) -> None:
    moderator = await people.moderator()
    failure = await fails(
        moderator.api.join_requests.GetJoinRequest(
            join_requests_pb2.GetJoinRequestRequest(request_id=10**12)
        ),
        NOT_FOUND,
        "Join request not found",
    )
    assert failure.reason == "JOIN_REQUEST_NOT_FOUND"


# ListJoinRequests


async def test_owner_lists_pending_requests_oldest_first_by_default(people: People) -> None:
    owner = await people.user()
    first, second, third = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner)
    asked = [await ask(person, channel.id) for person in (first, second, third)]
    await decline(owner, asked[1].id)

    pending = await listed(owner, channel.id)
    assert [(r.id, r.user_id, r.username, r.status) for r in pending] == [
        (asked[0].id, first.id, first.username, PENDING),
        (asked[2].id, third.id, third.username, PENDING),
    ]


async def test_owner_lists_requests_with_another_status(people: People) -> None:
    owner, first, second = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner)
    accepted = await accept(owner, (await ask(first, channel.id)).id)
    rejected = await decline(owner, (await ask(second, channel.id)).id)

    assert [r.id for r in await listed(owner, channel.id, ACCEPTED)] == [accepted.id]
    assert [r.id for r in await listed(owner, channel.id, REJECTED)] == [rejected.id]
    assert await listed(owner, channel.id, PENDING) == []


async def test_join_requests_come_in_pages(people: People) -> None:
    owner = await people.user()
    askers = [await people.user() for _ in range(3)]
    channel = await people.channel(owner)
    asked = [(await ask(person, channel.id)).id for person in askers]

    first = await owner.api.join_requests.ListJoinRequests(
        join_requests_pb2.ListJoinRequestsRequest(channel_id=channel.id, page_size=2)
    )
    assert [r.id for r in first.join_requests] == asked[:2]
    assert first.next_page_token
    second = await owner.api.join_requests.ListJoinRequests(
        join_requests_pb2.ListJoinRequestsRequest(
            channel_id=channel.id, page_size=2, page_token=first.next_page_token
        )
    )
    assert [r.id for r in second.join_requests] == asked[2:]
    assert second.next_page_token == ""


async def test_a_page_token_of_another_channel_is_invalid(people: People) -> None:
    owner = await people.user()
    askers = [await people.user() for _ in range(2)]
    channel, other = await people.channel(owner), await people.channel(owner)
    for person in askers:
        await ask(person, channel.id)
    page = await owner.api.join_requests.ListJoinRequests(
        join_requests_pb2.ListJoinRequestsRequest(channel_id=channel.id, page_size=1)
    )
    for token in (page.next_page_token, "garbage"):
        await fails(
            owner.api.join_requests.ListJoinRequests(
                join_requests_pb2.ListJoinRequestsRequest(channel_id=other.id, page_token=token)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Invalid page token",
        )


async def test_an_unknown_status_filter_is_invalid(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(
        owner.api.join_requests.ListJoinRequests(
            join_requests_pb2.ListJoinRequestsRequest(
                channel_id=channel.id, status=resources_pb2.JoinRequestStatus.ValueType(42)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unknown join request status",
    )
    assert [field for field, _ in failure.violations] == ["status"]


async def test_a_moderator_lists_any_channels_requests(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    assert [r.id for r in await listed(moderator, channel.id)] == [request.id]


async def test_non_owners_cannot_list_requests(people: People) -> None:
    owner, member, user = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    await ask(user, channel.id)
    for person in (member, user):
        failure = await fails(
            person.api.join_requests.ListJoinRequests(
                join_requests_pb2.ListJoinRequestsRequest(channel_id=channel.id)
            ),
            DENIED,
            "Not enough permissions",
        )
        assert failure.reason == "CHANNEL_OWNER_REQUIRED"


# ListMyJoinRequests


async def test_a_user_lists_their_own_pending_requests_oldest_first(people: People) -> None:
    owner, user, other = await people.user(), await people.user(), await people.user()
    channels = [await people.channel(owner) for _ in range(3)]
    asked = [await ask(user, channel.id) for channel in channels]
    await ask(other, channels[0].id)
    await decline(owner, asked[1].id)

    assert [(r.id, r.channel_id, r.user_id, r.username, r.status) for r in await mine(user)] == [
        (asked[0].id, channels[0].id, user.id, user.username, PENDING),
        (asked[2].id, channels[2].id, user.id, user.username, PENDING),
    ]
    assert [r.id for r in await mine(user, PENDING)] == [asked[0].id, asked[2].id]


async def test_a_user_lists_their_own_requests_with_another_status(people: People) -> None:
    owner, user = await people.user(), await people.user()
    first, second = await people.channel(owner), await people.channel(owner)
    accepted = await accept(owner, (await ask(user, first.id)).id)
    rejected = await decline(owner, (await ask(user, second.id)).id)
    again = await ask(user, second.id)

    assert [(r.id, r.decided_by) for r in await mine(user, ACCEPTED)] == [(accepted.id, owner.id)]
    assert [r.id for r in await mine(user, REJECTED)] == [rejected.id]
    assert [r.id for r in await mine(user)] == [again.id]


async def test_own_requests_come_in_pages(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channels = [await people.channel(owner) for _ in range(3)]
    asked = [(await ask(user, channel.id)).id for channel in channels]

    first = await user.api.join_requests.ListMyJoinRequests(
        join_requests_pb2.ListMyJoinRequestsRequest(page_size=2)
    )
    assert [r.id for r in first.join_requests] == asked[:2]
    assert first.next_page_token
    second = await user.api.join_requests.ListMyJoinRequests(
        join_requests_pb2.ListMyJoinRequestsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [r.id for r in second.join_requests] == asked[2:]
    assert second.next_page_token == ""
    assert [r.id for r in await mine(user, page_size=1)] == asked


async def test_a_page_token_of_another_list_is_invalid_for_ones_own_requests(
    people: People,
) -> None:
    owner, user, other = await people.user(), await people.user(), await people.user()
    channels = [await people.channel(owner) for _ in range(2)]
    for channel in channels:
        await ask(user, channel.id)
    await ask(other, channels[0].id)
    own = await user.api.join_requests.ListMyJoinRequests(
        join_requests_pb2.ListMyJoinRequestsRequest(page_size=1)
    )
    of_the_channel = await owner.api.join_requests.ListJoinRequests(
        join_requests_pb2.ListJoinRequestsRequest(channel_id=channels[0].id, page_size=1)
    )
    requests = [
        (other, own.next_page_token, NO_STATUS),
        (user, own.next_page_token, REJECTED),
        (user, of_the_channel.next_page_token, NO_STATUS),
        (user, "garbage", NO_STATUS),
    ]
    for person, token, status in requests:
        await fails(
            person.api.join_requests.ListMyJoinRequests(
                join_requests_pb2.ListMyJoinRequestsRequest(page_token=token, status=status)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Invalid page token",
        )


async def test_ones_own_requests_show_no_one_elses_and_none_to_deleted_channels(
    people: People,
) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    kept, deleted = await people.channel(owner), await people.channel(owner)
    request = await ask(user, kept.id)
    await ask(user, deleted.id)
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=deleted.id))

    assert [r.id for r in await mine(user)] == [request.id]
    assert await mine(owner) == []
    assert await mine(moderator) == [], "a moderator's own list is their own too"


async def test_listing_ones_own_requests_with_an_unknown_status_is_invalid(
    people: People,
) -> None:
    user = await people.user()
    failure = await fails(
        user.api.join_requests.ListMyJoinRequests(
            join_requests_pb2.ListMyJoinRequestsRequest(
                status=resources_pb2.JoinRequestStatus.ValueType(42)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unknown join request status",
    )
    assert [field for field, _ in failure.violations] == ["status"]


# AcceptJoinRequest and DeclineJoinRequest


async def test_owner_accepts_a_request_and_the_user_becomes_a_member(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)

    decided = await accept(owner, request.id)
    assert (decided.id, decided.status, decided.decided_by) == (request.id, ACCEPTED, owner.id)
    assert (decided.user_id, decided.username) == (user.id, user.username)
    assert decided.HasField("decided_at")
    assert decided.decided_at.ToDatetime() >= request.created_at.ToDatetime()
    assert await member_ids(owner, channel.id) == [owner.id, user.id]
    assert (await channel_by_id(owner, channel.id)).member_count == 2
    assert await my_channel_ids(user) == [channel.id]
    assert (await get(user, request.id)).status == ACCEPTED


async def test_a_moderator_accepts_a_request(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    decided = await accept(moderator, request.id)
    assert (decided.status, decided.decided_by) == (ACCEPTED, moderator.id)
    assert user.id in await member_ids(owner, channel.id)


async def test_accepting_twice_is_a_failed_precondition(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    await accept(owner, request.id)
    failure = await fails(
        owner.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "Join request is already accepted",
    )
    assert failure.reason == "JOIN_REQUEST_NOT_PENDING"
    assert (await channel_by_id(owner, channel.id)).member_count == 2


async def test_owner_declines_a_request_and_the_user_stays_out(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)

    decided = await decline(owner, request.id)
    assert (decided.status, decided.decided_by) == (REJECTED, owner.id)
    assert (decided.user_id, decided.username) == (user.id, user.username)
    assert decided.HasField("decided_at")
    assert await member_ids(owner, channel.id) == [owner.id]
    assert await my_channel_ids(user) == []


async def test_a_declined_request_cannot_be_accepted_or_declined_again(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    await decline(owner, request.id)
    for call in (
        owner.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
        ),
        owner.api.join_requests.DeclineJoinRequest(
            join_requests_pb2.DeclineJoinRequestRequest(request_id=request.id)
        ),
    ):
        await fails(call, grpc.StatusCode.FAILED_PRECONDITION, "Join request is already rejected")


async def test_non_owners_cannot_accept_or_decline(people: People) -> None:
    owner, member, user = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    request = await ask(user, channel.id)
    for person in (member, user):
        for call in (
            person.api.join_requests.AcceptJoinRequest(
                join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
            ),
            person.api.join_requests.DeclineJoinRequest(
                join_requests_pb2.DeclineJoinRequestRequest(request_id=request.id)
            ),
        ):
            failure = await fails(call, DENIED, "Not enough permissions")
            assert failure.reason == "CHANNEL_OWNER_REQUIRED"
    assert (await get(owner, request.id)).status == PENDING


async def test_deciding_an_unknown_request_is_not_found(people: People) -> None:
    owner = await people.user()
    for call in (
        owner.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=10**12)
        ),
        owner.api.join_requests.DeclineJoinRequest(
            join_requests_pb2.DeclineJoinRequestRequest(request_id=10**12)
        ),
    ):
        await fails(call, NOT_FOUND, "Join request not found")


async def test_adding_a_user_directly_settles_their_pending_request(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    await owner.api.members.AddMember(
        members_pb2.AddMemberRequest(channel_id=channel.id, user_id=user.id)
    )
    settled = await get(user, request.id)
    assert (settled.status, settled.decided_by) == (ACCEPTED, owner.id)
    assert await listed(owner, channel.id) == []


async def test_a_request_of_a_since_blocked_user_cannot_be_accepted(people: People) -> None:
    owner, user, moderator = await people.user(), await people.user(), await people.moderator()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
    failure = await fails(
        owner.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
        ),
        NOT_FOUND,
        "User not found",
    )
    assert failure.reason == "USER_NOT_FOUND"
    assert await member_ids(owner, channel.id) == [owner.id]


async def test_requests_to_a_deleted_channel_are_gone(people: People) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await ask(user, channel.id)
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))
    await fails(
        user.api.join_requests.GetJoinRequest(
            join_requests_pb2.GetJoinRequestRequest(request_id=request.id)
        ),
        NOT_FOUND,
    )
    await fails(
        owner.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
        ),
        NOT_FOUND,
    )
