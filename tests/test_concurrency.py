"""Membership and join requests under concurrent calls (SPEC §2: member_count
always equals the number of member rows; one pending request per user and channel)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import grpc
from atomchat.v1 import join_requests_pb2, members_pb2, resources_pb2

from tests.support import People, Person, member_ids, member_rows, sql, stored_member_count

OK = "OK"
EXPECTED_REFUSALS = {"ALREADY_EXISTS", "NOT_FOUND", "FAILED_PRECONDITION"}


async def outcome(call: Awaitable[Any]) -> str:
    """ "OK", or the name of the status code the call failed with."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return OK


async def ask(person: Person, channel_id: int) -> resources_pb2.JoinRequest:
    request: resources_pb2.JoinRequest = await person.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel_id)
    )
    return request


async def test_concurrent_adds_accepts_and_removals_keep_member_count_exact(
    people: People,
) -> None:
    owner, moderator = await people.user(), await people.moderator()
    to_add = [await people.user() for _ in range(6)]
    askers = [await people.user() for _ in range(4)]
    to_remove = [await people.user() for _ in range(4)]
    channel = await people.channel(owner, members=tuple(to_remove))
    requests = [await ask(person, channel.id) for person in askers]

    def add(by: Person, user: Person) -> Any:
        return by.api.members.AddMember(
            members_pb2.AddMemberRequest(channel_id=channel.id, user_id=user.id)
        )

    def accept(by: Person, request: resources_pb2.JoinRequest) -> Any:
        return by.api.join_requests.AcceptJoinRequest(
            join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
        )

    def remove(by: Person, user: Person) -> Any:
        return by.api.members.RemoveMember(
            members_pb2.RemoveMemberRequest(channel_id=channel.id, user_id=user.id)
        )

    # Every change twice, by the owner and by a moderator; the first asker is
    # also added directly while their request is being accepted.
    groups: dict[str, list[Awaitable[Any]]] = {}
    for user in to_add:
        groups[f"add {user.username}"] = [add(owner, user), add(moderator, user)]
    for request in requests:
        groups[f"accept {request.id}"] = [accept(owner, request), accept(moderator, request)]
    groups[f"accept {requests[0].id}"].append(add(owner, askers[0]))
    for user in to_remove:
        groups[f"remove {user.username}"] = [remove(owner, user), remove(moderator, user)]
    calls = [call for group in groups.values() for call in group]
    assert len(calls) >= 20

    results = await asyncio.gather(*(outcome(call) for call in calls))

    by_group: dict[str, list[str]] = {}
    position = 0
    for name, group in groups.items():
        by_group[name] = list(results[position : position + len(group)])
        position += len(group)
    assert set(results) <= {OK} | EXPECTED_REFUSALS, Counter(results)
    for name, outcomes in by_group.items():
        assert outcomes.count(OK) == 1, (name, outcomes)

    expected = {owner.id, *(u.id for u in to_add), *(u.id for u in askers)}
    assert set(await member_ids(owner, channel.id)) == expected
    assert await member_rows(people.database_url, channel.id) == len(expected)
    assert await stored_member_count(people.database_url, channel.id) == len(expected)


async def test_concurrent_joins_and_leaves_of_distinct_users_keep_the_count(
    people: People,
) -> None:
    owner = await people.user()
    leavers = [await people.user() for _ in range(10)]
    joiners = [await people.user() for _ in range(10)]
    channel = await people.channel(owner, members=tuple(leavers))

    calls: list[Awaitable[Any]] = [
        person.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=channel.id))
        for person in leavers
    ] + [
        owner.api.members.AddMember(
            members_pb2.AddMemberRequest(channel_id=channel.id, user_id=person.id)
        )
        for person in joiners
    ]
    results = await asyncio.gather(*(outcome(call) for call in calls))

    assert results == [OK] * 20
    assert await member_rows(people.database_url, channel.id) == 11
    assert await stored_member_count(people.database_url, channel.id) == 11


async def test_two_concurrent_join_requests_leave_one_pending(people: People) -> None:
    owner = await people.user()
    user = await people.user()
    channels = [await people.channel(owner) for _ in range(5)]

    for channel in channels:
        first, second = await asyncio.gather(
            outcome(ask(user, channel.id)), outcome(ask(user, channel.id))
        )
        assert sorted([first, second]) == ["ALREADY_EXISTS", OK]
        pending = await sql(
            people.database_url,
            "SELECT count(*) AS n FROM channel_join_requests"
            " WHERE channel_id = $1 AND user_id = $2 AND status = 'pending'",
            channel.id,
            user.id,
        )
        assert pending[0]["n"] == 1


async def test_the_loser_of_a_join_request_race_is_told_it_already_exists(
    people: People,
) -> None:
    owner, user = await people.user(), await people.user()
    channel = await people.channel(owner)
    results = await asyncio.gather(
        ask(user, channel.id), ask(user, channel.id), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert [(r.code(), r.details()) for r in refused] == [
        (grpc.StatusCode.ALREADY_EXISTS, "Join request already exists")
    ]


async def test_racing_accept_and_decline_of_one_request_agree_with_the_outcome(
    people: People,
) -> None:
    owner, moderator = await people.user(), await people.moderator()
    askers = [await people.user() for _ in range(5)]
    channel = await people.channel(owner)
    requests = [await ask(person, channel.id) for person in askers]

    for person, request in zip(askers, requests, strict=True):
        accepted, declined = await asyncio.gather(
            outcome(
                owner.api.join_requests.AcceptJoinRequest(
                    join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
                )
            ),
            outcome(
                moderator.api.join_requests.DeclineJoinRequest(
                    join_requests_pb2.DeclineJoinRequestRequest(request_id=request.id)
                )
            ),
        )
        assert sorted([accepted, declined]) == ["FAILED_PRECONDITION", OK]
        decided = await person.api.join_requests.GetJoinRequest(
            join_requests_pb2.GetJoinRequestRequest(request_id=request.id)
        )
        is_member = person.id in await member_ids(owner, channel.id)
        if accepted == OK:
            assert (decided.status, decided.decided_by, is_member) == (
                resources_pb2.JOIN_REQUEST_STATUS_ACCEPTED,
                owner.id,
                True,
            )
        else:
            assert (decided.status, decided.decided_by, is_member) == (
                resources_pb2.JOIN_REQUEST_STATUS_REJECTED,
                moderator.id,
                False,
            )
    assert await member_rows(people.database_url, channel.id) == await stored_member_count(
        people.database_url, channel.id
    )
