"""Ordering: gap-free seqs under concurrent senders, no gap or duplicate between
history and live while messages keep coming, and resuming with after_seq."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from atomchat.v1 import chat_pb2
from google.rpc import code_pb2

from tests.chat_support import chat, post, seqs, subscription
from tests.support import People, Person, fails, sql


async def test_concurrent_senders_get_gap_free_increasing_seqs(people: People) -> None:
    owner = await people.user()
    senders = [await people.user() for _ in range(5)]
    channel = await people.channel(owner, members=tuple(senders))

    async with chat(owner, channel.id, history_limit=0) as watcher:
        sent = await asyncio.gather(
            *(post(s, channel.id, f"{s.username} {n}") for s in senders for n in range(20))
        )
        received = await watcher.feed.until_messages(100)

    assert sorted(m.seq for m in sent) == list(range(1, 101))
    assert seqs(received) == list(range(1, 101))
    assert {m.id for m in received} == {m.id for m in sent}


async def _keep_sending(sender: Person, channel_id: int, stop: asyncio.Event) -> int:
    count = 0
    while not stop.is_set():
        await post(sender, channel_id, f"live {count}")
        count += 1
    return count


async def test_streams_joining_during_a_flood_see_contiguous_seqs(people: People) -> None:
    owner = await people.user()
    senders = [await people.user() for _ in range(3)]
    readers = [await people.user() for _ in range(6)]
    channel = await people.channel(owner, members=(*senders, *readers))
    stop = asyncio.Event()
    flood = [asyncio.create_task(_keep_sending(s, channel.id, stop)) for s in senders]

    async with contextlib.AsyncExitStack() as stack:
        streams = []
        for index, reader in enumerate(readers):
            await post(owner, channel.id, f"between joins {index}")
            options: dict[str, Any] = {"after_seq": 0} if index % 2 else {"history_limit": 3}
            streams.append(await stack.enter_async_context(chat(reader, channel.id, **options)))
        stop.set()
        await asyncio.gather(*flood)
        last = (await post(owner, channel.id, "the end")).seq
        for index, stream in enumerate(streams):
            await stream.feed.until(lambda f: bool(f.messages()) and f.messages()[-1].seq == last)
            got = seqs(stream.feed.messages())
            assert got == list(range(got[0], last + 1)), f"stream {index} has a gap or duplicate"
            if index % 2:
                assert got[0] == 1


async def test_resume_after_seq_gets_everything_after_it_then_live(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    for n in range(25):
        await post(owner, channel.id, f"m{n}")

    async with chat(owner, channel.id, after_seq=17) as stream:
        await stream.feed.until_messages(8)
        await stream.send("live one", "live")
        await stream.ack("live")
        messages = await stream.feed.until_messages(9)

    assert seqs(messages) == list(range(18, 27))
    assert messages[-1].content == "live one"


async def test_resume_after_a_dropped_stream_loses_nothing(people: People) -> None:
    owner, writer = await people.user(), await people.user()
    channel = await people.channel(owner, members=(writer,))
    async with chat(owner, channel.id, history_limit=0) as first:
        for n in range(5):
            await post(writer, channel.id, f"before drop {n}")
        seen = await first.feed.until_messages(5)
    last_seen = seen[-1].seq
    for n in range(5):
        await post(writer, channel.id, f"while away {n}")
    async with chat(owner, channel.id, after_seq=last_seen) as second:
        resumed = await second.feed.until_messages(5)
    assert [m.content for m in resumed] == [f"while away {n}" for n in range(5)]


async def test_a_large_catch_up_arrives_complete_and_in_order(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    for start in range(0, 1200, 100):
        await asyncio.gather(
            *(post(owner, channel.id, f"bulk {n}") for n in range(start, start + 100))
        )
    async with subscription(owner, channel.id, after_seq=0, max_batch=100) as feed:
        messages = await feed.until_messages(1200, timeout=30)
    assert seqs(messages) == list(range(1, 1201))


async def test_subscribe_streams_what_chat_stream_receives(people: People) -> None:
    owner, writer = await people.user(), await people.user()
    channel = await people.channel(owner, members=(writer,))
    await post(writer, channel.id, "history")
    async with subscription(owner, channel.id) as feed:
        await feed.until_messages(1)
        await post(writer, channel.id, "live")
        messages = await feed.until_messages(2)
    assert feed.frames[0].WhichOneof("event") == "joined"
    assert [m.content for m in messages] == ["history", "live"]


async def test_send_message_validates_like_the_stream(people: People) -> None:
    owner, stranger = await people.user(), await people.user()
    channel = await people.channel(owner)
    blank = await fails(post(owner, channel.id, "  "), grpc.StatusCode.INVALID_ARGUMENT)
    assert blank.violations == [
        ("content", "Message content must be 1-4000 characters after trimming")
    ]
    await fails(
        post(stranger, channel.id, "hi"),
        grpc.StatusCode.PERMISSION_DENIED,
        "You are not a member of this channel.",
    )
    await fails(post(owner, 10**9, "hi"), grpc.StatusCode.NOT_FOUND, "Channel not found")


async def test_list_messages_pages_newest_first(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    for n in range(7):
        await post(owner, channel.id, f"m{n}")
    pages: list[list[int]] = []
    token = ""
    while True:
        page = await owner.api.chat.ListMessages(
            chat_pb2.ListMessagesRequest(channel_id=channel.id, page_size=3, page_token=token)
        )
        pages.append([m.seq for m in page.messages])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[7, 6, 5], [4, 3, 2], [1]]


async def test_nul_characters_are_refused_before_they_reach_the_database(people: People) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    failure = await fails(post(owner, channel.id, "a\x00b"), grpc.StatusCode.INVALID_ARGUMENT)
    assert failure.violations == [("content", "Message content must not contain NUL characters")]
    await fails(post(owner, channel.id, "fine", "key\x00"), grpc.StatusCode.INVALID_ARGUMENT)
    async with chat(owner, channel.id, history_limit=0) as stream:
        await stream.send("x\x00y", "nul")
        assert (await stream.error("nul")).code == code_pb2.INVALID_ARGUMENT


async def test_a_message_the_database_refuses_does_not_fail_those_committed_with_it(
    people: People, database_url: str
) -> None:
    owner = await people.user()
    channel = await people.channel(owner)
    marker = f"poison {channel.id}"
    await sql(
        database_url,
        f"""
        CREATE FUNCTION refuse_poison_{channel.id}() RETURNS trigger AS $$
        BEGIN
            IF NEW.content = '{marker}' THEN RAISE EXCEPTION 'refused'; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql
        """,
    )
    await sql(
        database_url,
        f"CREATE TRIGGER refuse_poison_{channel.id} BEFORE INSERT ON messages"
        f" FOR EACH ROW EXECUTE FUNCTION refuse_poison_{channel.id}()",
    )
    try:
        contents = [f"good {n}" for n in range(30)]
        contents.insert(15, marker)
        results = await asyncio.gather(
            *(post(owner, channel.id, content) for content in contents), return_exceptions=True
        )
    finally:
        await sql(database_url, f"DROP TRIGGER refuse_poison_{channel.id} ON messages")
        await sql(database_url, f"DROP FUNCTION refuse_poison_{channel.id}()")
    refused = results.pop(15)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() == grpc.StatusCode.INTERNAL
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert sorted(m.content for m in stored) == sorted(f"good {n}" for n in range(30))
    assert sorted(m.seq for m in stored) == list(range(1, 31))
