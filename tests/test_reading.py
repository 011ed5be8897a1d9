"""Read markers and unread counts (SPEC §8): exact whatever happens to the
timeline, the same on every device of a user, and read in one statement."""

from __future__ import annotations

import grpc
from atomchat.v1 import channels_pb2, members_pb2, resources_pb2

from atomchat_server.db.engine import Database
from atomchat_server.domain import reading, timeline_store
from atomchat_server.domain.entities import Actor
from atomchat_server.domain.kinds import Role
from tests.chat_support import post
from tests.support import People, Person, fails, sql
from tests.test_timeline import delete, edit, react


async def listed(person: Person, channel_id: int) -> resources_pb2.Channel:
    response = await person.api.channels.ListMyChannels(
        channels_pb2.ListMyChannelsRequest(page_size=200)
    )
    found: resources_pb2.Channel = next(c for c in response.channels if c.id == channel_id)
    return found


async def state(person: Person, channel: resources_pb2.Channel) -> tuple[int, int, int]:
    """(last_read_seq, unread, mentions) as ListMyChannels and GetChannel both say."""
    mine = (await listed(person, channel.id)).read_state
    detail = await person.api.channels.GetChannel(channels_pb2.GetChannelRequest(slug=channel.slug))
    assert detail.channel.read_state == mine
    return mine.last_read_seq, mine.unread_count, mine.mention_count


async def mark(person: Person, channel_id: int, seq: int) -> resources_pb2.ReadState:
    read: resources_pb2.ReadState = await person.api.channels.MarkRead(
        channels_pb2.MarkReadRequest(channel_id=channel_id, seq=seq)
    )
    return read


async def test_a_new_member_starts_with_everything_read(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner)
    for n in range(3):
        await post(owner, channel.id, f"before {n}")
    await people.channel(owner)  # another channel of the owner's, untouched
    added = await owner.api.members.AddMember(
        members_pb2.AddMemberRequest(channel_id=channel.id, user_id=member.id)
    )
    assert added.user_id == member.id
    assert (await listed(member, channel.id)).last_seq == 3
    assert await state(member, channel) == (3, 0, 0)


async def test_counts_are_exact_through_posts_edits_deletions_mentions_and_two_devices(
    people: People,
) -> None:
    owner, phone = await people.user(), await people.user()
    laptop = await people.login(phone.username, phone.password)
    channel = await people.channel(owner, members=(phone,))
    hello = await post(owner, channel.id, "hello")
    look = await post(owner, channel.id, f"@{phone.username} look at this")
    await post(phone, channel.id, "my own message is never unread")
    assert await state(laptop, channel) == (0, 2, 1)
    assert await state(owner, channel) == (0, 1, 0)
    await react(owner, hello, "👍")
    assert await state(laptop, channel) == (0, 2, 1), "a reaction is no message"
    await edit(owner, hello, f"hello @{phone.username}")
    assert await state(laptop, channel) == (0, 2, 2), "an edit can add a mention"
    await delete(owner, look)
    assert await state(laptop, channel) == (0, 1, 1), "a deleted message is not unread"
    read = await mark(phone, channel.id, hello.seq)
    assert (read.channel_id, read.last_read_seq, read.unread_count) == (channel.id, 1, 0)
    assert await state(laptop, channel) == (1, 0, 0), "the other device sees it"
    await post(owner, channel.id, "again")
    assert await state(laptop, channel) == (1, 1, 0)
    backwards = await mark(laptop, channel.id, 0)
    assert backwards.last_read_seq == 1, "the marker never moves back"
    last_seq = (await listed(laptop, channel.id)).last_seq
    assert last_seq == 7  # 4 messages, a reaction, an edit and a deletion
    beyond = await mark(laptop, channel.id, 10**12)
    assert (beyond.last_read_seq, beyond.unread_count) == (last_seq, 0)


async def test_only_members_mark_and_see_a_read_state(people: People) -> None:
    owner, outsider = await people.user(), await people.user()
    moderator = await people.moderator()
    channel = await people.channel(owner)
    await fails(mark(outsider, channel.id, 1), grpc.StatusCode.PERMISSION_DENIED)
    await fails(mark(moderator, channel.id, 1), grpc.StatusCode.PERMISSION_DENIED)
    await fails(mark(owner, channel.id, -1), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(mark(owner, 10**12, 1), grpc.StatusCode.NOT_FOUND)
    detail = await moderator.api.channels.GetChannel(
        channels_pb2.GetChannelRequest(slug=channel.slug)
    )
    assert not detail.channel.HasField("read_state")
    await owner.api.channels.DeleteChannel(channels_pb2.DeleteChannelRequest(channel_id=channel.id))
    await fails(mark(owner, channel.id, 1), grpc.StatusCode.NOT_FOUND)


async def test_a_user_in_200_channels_gets_every_state_from_one_statement(
    people: People, database_url: str
) -> None:
    owner, reader = await people.user(), await people.user()
    channels = [await people.channel(owner, members=(reader,)) for _ in range(200)]
    for n, channel in enumerate(channels[::20]):
        for k in range(n + 1):
            await post(owner, channel.id, f"@{reader.username} {k}" if k % 2 else f"plain {k}")
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            connection = await timeline_store.raw_connection(session)
            statements: list[str] = []
            connection.add_query_logger(lambda record: statements.append(record.query))
            page = await reading.list_my_channels(
                session,
                actor=Actor(user_id=reader.id, username=reader.username, role=Role.USER),
                page_size=200,
                page_token="",
            )
    finally:
        await database.dispose()
    assert len(statements) == 1, statements
    assert [c.id for c in page.items] == [c.id for c in channels]
    states = {c.id: c.read_state for c in page.items if c.read_state is not None}
    counts = {id_: (s.unread_count, s.mention_count) for id_, s in states.items()}
    for n, channel in enumerate(channels[::20]):
        assert counts[channel.id] == (n + 1, (n + 1) // 2)
    rows = await sql(
        database_url,
        "SELECT count(*) AS n FROM channel_members WHERE user_id = $1",
        reader.id,
    )
    assert rows[0]["n"] == 200
