"""The inbox (SPEC §9): stored events with gap-free per-user ids and exact
resume, live activity, on any server process, ended by a block."""

from __future__ import annotations

from typing import Any

import grpc
from atomchat.v1 import (
    channels_pb2,
    inbox_pb2,
    join_requests_pb2,
    members_pb2,
    resources_pb2,
    users_pb2,
)

from atomchat_server.app import App
from atomchat_server.db.engine import Database
from atomchat_server.domain import inbox as inbox_store
from atomchat_server.domain import timeline_store
from atomchat_server.domain.kinds import InboxKind
from devsupport import serve_atomchat
from tests.chat_support import Feed, chat, inbox, post
from tests.conftest import TEST_SETTINGS, Dial, with_settings
from tests.support import People, Person, failure_of, sql
from tests.test_timeline import delete, edit

ADDED, REMOVED, DELETED = (
    inbox_pb2.MEMBERSHIP_CHANGE_ADDED,
    inbox_pb2.MEMBERSHIP_CHANGE_REMOVED,
    inbox_pb2.MEMBERSHIP_CHANGE_CHANNEL_DELETED,
)


def stored(feed: Feed) -> list[Any]:
    return [f for f in feed.frames if f.id]


def kinds(feed: Feed) -> list[str]:
    return [f.WhichOneof("event") for f in stored(feed)]


def activity(feed: Feed, channel_id: int) -> list[tuple[int, int, int, int]]:
    """(last_seq, last_read_seq, unread, mentions) of each activity event of the channel."""
    return [
        (
            a.last_seq,
            a.read_state.last_read_seq,
            a.read_state.unread_count,
            a.read_state.mention_count,
        )
        for a in feed.of("activity")
        if a.channel_id == channel_id
    ]


async def request_to_join(person: Person, channel_id: int) -> resources_pb2.JoinRequest:
    request: resources_pb2.JoinRequest = await person.api.join_requests.CreateJoinRequest(
        join_requests_pb2.CreateJoinRequestRequest(channel_id=channel_id)
    )
    return request


async def test_a_join_request_reaches_the_owner_connected_to_another_process_and_back(
    people: People, database_url: str, dial: Dial
) -> None:
    owner, asker = await people.user(), await people.user()
    channel = await people.channel(owner)
    async with serve_atomchat(
        database_url=database_url, ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret
    ) as other:
        remote_owner = await dial(other.grpc_port, owner)
        async with inbox(remote_owner) as owners, inbox(asker) as askers:
            request = await request_to_join(asker, channel.id)
            await owners.until(lambda f: bool(stored(f)))
            notice = owners.of("join_request")[0]
            assert (notice.join_request.id, notice.join_request.user_id) == (request.id, asker.id)
            assert notice.join_request.username == asker.username, "the owner sees who asks"
            assert (notice.channel.id, notice.channel.name) == (channel.id, channel.name)
            await remote_owner.api.join_requests.AcceptJoinRequest(
                join_requests_pb2.AcceptJoinRequestRequest(request_id=request.id)
            )
            await askers.until(lambda f: len(stored(f)) == 2)
    decided = askers.of("join_request_decided")[0]
    assert decided.join_request.status == resources_pb2.JOIN_REQUEST_STATUS_ACCEPTED
    assert (decided.join_request.user_id, decided.join_request.username) == (
        asker.id,
        asker.username,
    )
    assert decided.channel.id == channel.id
    (added,) = askers.of("membership")
    assert (added.channel.id, added.change) == (channel.id, ADDED)
    assert [f.id for f in stored(askers)] == [1, 2], "ids are the user's own, from 1"


async def test_a_declined_request_tells_the_requester_and_no_one_else(people: People) -> None:
    owner, asker = await people.user(), await people.user()
    channel = await people.channel(owner)
    request = await request_to_join(asker, channel.id)
    await owner.api.join_requests.DeclineJoinRequest(
        join_requests_pb2.DeclineJoinRequestRequest(request_id=request.id)
    )
    async with inbox(asker) as askers, inbox(owner) as owners:
        await askers.until(lambda f: bool(stored(f)))
        await owners.until(lambda f: bool(stored(f)))
    assert kinds(askers) == ["join_request_decided"]
    assert askers.of("join_request_decided")[0].join_request.status == (
        resources_pb2.JOIN_REQUEST_STATUS_REJECTED
    )
    assert kinds(owners) == ["join_request"], "the owner's own decision is not news to them"


async def test_mentions_reach_the_mentioned_never_the_sender_and_edits_add_new_ones(
    people: People, database_url: str
) -> None:
    owner, member, other = await people.user(), await people.user(), await people.user()
    outsider = await people.user()
    channel = await people.channel(owner, members=(member, other))
    async with inbox(member) as members, inbox(owner) as owners, inbox(other) as others:
        first = await post(
            owner, channel.id, f"@{member.username} @{owner.username} @{outsider.username} hi"
        )
        await edit(owner, first, f"@{member.username} and now @{other.username}")
        await members.until(lambda f: bool(f.of("mention")))
        await others.until(lambda f: bool(f.of("mention")))
        await post(owner, channel.id, "a sync point")
        await owners.until(lambda f: len(f.of("activity")) >= 2)
    (mention,) = members.of("mention")
    assert (mention.message.id, mention.channel.id) == (first.id, channel.id)
    assert others.of("mention")[0].message.id == first.id, "mentioned by the edit"
    assert len(members.of("mention")) == 1, "the edit mentions the member again: no news"
    assert stored(owners) == [], "a self-mention is no news"
    await post(owner, channel.id, f"@{outsider.username} cannot read this")
    # Mentions are stored in the post's own transaction: none is coming.
    rows = await sql(database_url, "SELECT id FROM inbox_events WHERE user_id = $1", outsider.id)
    assert rows == [], "someone who cannot read the channel is not mentioned"


async def test_memberships_tell_the_user_concerned(people: People) -> None:
    owner, member, leaver = await people.user(), await people.user(), await people.user()
    channel = await people.channel(owner, members=(leaver,))
    async with inbox(member) as members, inbox(leaver) as leavers, inbox(owner) as owners:
        await owner.api.members.AddMember(
            members_pb2.AddMemberRequest(channel_id=channel.id, user_id=member.id)
        )
        await owner.api.members.RemoveMember(
            members_pb2.RemoveMemberRequest(channel_id=channel.id, user_id=member.id)
        )
        await owner.api.members.AddMember(
            members_pb2.AddMemberRequest(channel_id=channel.id, user_id=member.id)
        )
        await leaver.api.members.LeaveChannel(
            members_pb2.LeaveChannelRequest(channel_id=channel.id)
        )
        await owner.api.channels.DeleteChannel(
            channels_pb2.DeleteChannelRequest(channel_id=channel.id)
        )
        await members.until(lambda f: len(stored(f)) == 4)
        await leavers.until(lambda f: len(stored(f)) == 2)
        await owners.until(lambda f: len(stored(f)) == 1)
    assert [m.change for m in members.of("membership")] == [ADDED, REMOVED, ADDED, DELETED]
    assert [m.change for m in leavers.of("membership")] == [ADDED, REMOVED], "added before"
    assert [m.change for m in owners.of("membership")] == [DELETED]
    assert [f.id for f in stored(members)] == [1, 2, 3, 4]


async def test_after_id_resumes_exactly_and_without_it_the_last_50_come_first(
    people: People,
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    for n in range(60):
        await post(owner, channel.id, f"@{member.username} {n}")
    async with inbox(member) as recent:
        await recent.until(lambda f: len(stored(f)) == 50)
    # Event 1 is the member's addition; 2-61 the mentions.
    assert [f.id for f in stored(recent)] == list(range(12, 62))
    async with inbox(member, after_id=58) as resumed:
        await resumed.until(lambda f: len(stored(f)) == 3)
        await post(owner, channel.id, f"@{member.username} live")
        await resumed.until(lambda f: len(stored(f)) == 4)
    assert [f.id for f in stored(resumed)] == [59, 60, 61, 62]
    assert resumed.of("mention")[-1].message.content.endswith("live")
    async with inbox(member, wait_open=False, after_id=63) as beyond:
        ended = await beyond.until_ended()
    failure = failure_of(ended)
    assert failure.code == grpc.StatusCode.OUT_OF_RANGE
    assert failure.metadata == {"last_id": "62"}
    async with inbox(member, wait_open=False, after_id=-1) as negative:
        assert failure_of(await negative.until_ended()).code == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_last_1000_stored_events_are_kept(people: People, database_url: str) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    message = await post(owner, channel.id, "about this")
    record = inbox_store.InboxRecord(
        user_id=member.id, kind=InboxKind.MENTION, channel_id=channel.id, message_id=message.id
    )
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            connection = await timeline_store.raw_connection(session)
            latest = await inbox_store.record(connection, [record] * 1010)
    finally:
        await database.dispose()
    assert latest == {member.id: 1011}, "after the member's addition, event 1"
    rows = await sql(
        database_url,
        "SELECT min(id) AS first, max(id) AS last, count(*) AS n FROM inbox_events"
        " WHERE user_id = $1",
        member.id,
    )
    assert (rows[0]["first"], rows[0]["last"], rows[0]["n"]) == (12, 1011, 1000)
    async with inbox(member, after_id=0) as everything:
        await everything.until(lambda f: len(stored(f)) == 1000)
    assert stored(everything)[0].id == 12


async def test_activity_counts_what_happens_in_the_users_channels(people: People) -> None:
    owner, member = await people.user(), await people.user()
    laptop = await people.login(member.username, member.password)
    channel = await people.channel(owner, members=(member,))
    async with inbox(member) as phone:
        hello = await post(owner, channel.id, "hello")
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(1, 0, 1, 0)])
        await post(owner, channel.id, f"@{member.username} look")
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(2, 0, 2, 1)])
        await post(member, channel.id, "mine")
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(3, 0, 2, 1)])
        await delete(owner, hello)
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(4, 0, 1, 1)])
        await laptop.api.channels.MarkRead(
            channels_pb2.MarkReadRequest(channel_id=channel.id, seq=4)
        )
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(4, 4, 0, 0)])
        # A channel joined while the stream is open is followed too.
        newer = await people.channel(owner, members=(member,))
        await post(owner, newer.id, "in the new one")
        await phone.until(lambda f: activity(f, newer.id)[-1:] == [(1, 0, 1, 0)])
        await member.api.members.LeaveChannel(members_pb2.LeaveChannelRequest(channel_id=newer.id))
        await post(owner, newer.id, "after leaving")
        await post(owner, channel.id, "sync")
        await phone.until(lambda f: activity(f, channel.id)[-1:] == [(5, 4, 1, 0)])
    assert activity(phone, newer.id)[-1] == (1, 0, 1, 0), "nothing after leaving"
    assert all(f.id == 0 for f in phone.frames if f.HasField("activity")), "never stored"


async def test_activity_crosses_server_processes(
    people: People, database_url: str, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with serve_atomchat(
        database_url=database_url, ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret
    ) as other:
        remote = await dial(other.grpc_port, owner)
        async with inbox(member) as here:
            await post(remote, channel.id, f"@{member.username} from over there")
            await here.until(lambda f: bool(f.of("mention")) and bool(f.of("activity")))
    assert activity(here, channel.id)[-1] == (1, 0, 1, 1)


async def test_blocking_ends_the_inbox_stream(people: People) -> None:
    member = await people.user()
    moderator = await people.moderator()
    async with inbox(member) as stream:
        await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=member.id))
        ended = await stream.until_ended()
    assert ended.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_quiet_inbox_gets_heartbeats(people: People, dial: Dial, database_url: str) -> None:
    app = App(with_settings(heartbeat_seconds=0.2), database_url)
    await app.start()
    try:
        person = await people.user()
        remote = await dial(app.port, person)
        async with inbox(remote) as stream:
            await stream.until(lambda f: len(f.of("heartbeat")) >= 2, timeout=5)
        assert all(beat.server_time.seconds > 0 for beat in stream.of("heartbeat"))
    finally:
        await app.stop()


async def test_quiet_inbox_streams_do_not_hold_up_the_streams_opening_after_them(
    people: People,
) -> None:
    person = await people.user()
    owner = await people.user()
    channel = await people.channel(owner, members=(person,))
    # More quiet inboxes than streams may be opening at once (api/admission.py):
    # each counts as open once it has sent its headers.
    async with inbox(person), inbox(person), inbox(person), inbox(person) as last:
        async with chat(person, channel.id) as stream:
            assert stream.feed.of("joined")
        assert not last.finished
