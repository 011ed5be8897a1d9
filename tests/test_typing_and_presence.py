"""Typing and presence (SPEC §8) on real streams: ephemeral frames on the others'
streams only, gated, never stored, and the same across server processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import grpc
from atomchat.v1 import channels_pb2, chat_pb2, members_pb2

from atomchat_server.app import App
from devsupport import serve_atomchat
from tests.chat_support import chat, post, subscription
from tests.conftest import TEST_SETTINGS, Dial, with_settings
from tests.support import People, Person, fails, sql
from tests.tcp_proxy import TcpProxy

GRACE = TEST_SETTINGS.presence_grace_seconds


def typists(frames: list[Any]) -> list[int]:
    return [t.user_id for t in frames]


def presence(feed: Any) -> list[tuple[int, bool]]:
    return [(p.user_id, p.online) for p in feed.of("presence")]


async def set_typing(person: Person, channel_id: int) -> Any:
    return await person.api.chat.SetTyping(chat_pb2.SetTypingRequest(channel_id=channel_id))


async def online_members(person: Person, channel_id: int) -> dict[int, bool]:
    response = await person.api.members.ListMembers(
        members_pb2.ListMembersRequest(channel_id=channel_id)
    )
    return {m.user_id: m.online for m in response.members}


async def test_typing_reaches_the_others_streams_once_per_two_seconds_and_never_history(
    people: People, database_url: str
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with (
        chat(owner, channel.id) as typist,
        chat(member, channel.id) as reader,
        subscription(member, channel.id) as other_device,
    ):
        await other_device.until(lambda f: bool(f.of("joined")))
        before = time.time()
        await typist.call.write(chat_pb2.ChatStreamRequest(typing=chat_pb2.ChatTyping()))
        await typist.call.write(chat_pb2.ChatStreamRequest(typing=chat_pb2.ChatTyping()))
        await set_typing(member, channel.id)
        await reader.feed.until(lambda f: bool(f.of("typing")))
        await other_device.until(lambda f: bool(f.of("typing")))
        notice = reader.feed.of("typing")[0]
        assert (notice.user_id, notice.username) == (owner.id, owner.username)
        expires = notice.expires_at.ToDatetime().timestamp()
        assert before + 5 <= expires <= time.time() + 6, "it lasts 6 seconds"
        await typist.feed.until(lambda f: bool(f.of("typing")))
        # A message ends its sender's typing: the next notice goes through at once.
        await post(owner, channel.id, "done typing")
        await set_typing(owner, channel.id)
        await reader.feed.until(lambda f: len(f.messages()) == 1 and len(f.of("typing")) == 2)
        await other_device.until(lambda f: len(f.messages()) == 1 and len(f.of("typing")) == 2)
        await typist.feed.until(lambda f: len(f.messages()) == 1)
    assert typists(reader.feed.of("typing")) == [owner.id, owner.id]
    assert typists(other_device.of("typing")) == [owner.id, owner.id]
    assert typists(typist.feed.of("typing")) == [member.id], "never the typist's own streams"
    async with subscription(member, channel.id, after_seq=0) as replay:
        await replay.until(lambda f: len(f.messages()) == 1)
        assert replay.of("typing") == []
    (row,) = await sql(database_url, "SELECT last_seq FROM channels WHERE id = $1", channel.id)
    assert row["last_seq"] == 1, "typing takes no seq"


async def test_only_those_who_take_part_may_say_they_are_typing(people: People) -> None:
    owner, outsider = await people.user(), await people.user()
    channel = await people.channel(owner)
    await fails(set_typing(outsider, channel.id), grpc.StatusCode.PERMISSION_DENIED)
    await fails(set_typing(owner, 10**12), grpc.StatusCode.NOT_FOUND)


async def test_presence_follows_the_first_and_last_stream_of_each_user(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with chat(owner, channel.id) as watcher:
        assert list(watcher.feed.of("joined")[0].online_user_ids) == [owner.id]
        async with chat(member, channel.id) as first, subscription(member, channel.id) as second:
            await second.until(lambda f: bool(f.of("joined")))
            assert sorted(first.feed.of("joined")[0].online_user_ids) == sorted(
                [owner.id, member.id]
            )
            await watcher.feed.until(lambda f: bool(f.of("presence")))
            assert await online_members(owner, channel.id) == {owner.id: True, member.id: True}
            detail = await owner.api.channels.GetChannel(
                channels_pb2.GetChannelRequest(slug=channel.slug)
            )
            assert all(m.online for m in detail.members)
        # Both of the member's streams are gone; presence waits out the grace period.
        await watcher.feed.until(lambda f: len(f.of("presence")) == 2, timeout=GRACE + 5)
        assert presence(watcher.feed) == [(member.id, True), (member.id, False)]
        assert watcher.feed.of("presence")[0].username == member.username
        assert await online_members(owner, channel.id) == {owner.id: True, member.id: False}
        assert first.feed.of("presence") == [], "nobody else came or went"


async def test_a_reconnect_within_the_grace_period_does_not_flap(people: People) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with chat(owner, channel.id) as watcher:
        async with chat(member, channel.id):
            await watcher.feed.until(lambda f: bool(f.of("presence")))
        async with chat(member, channel.id):
            await asyncio.sleep(GRACE + 0.5)
            await post(member, channel.id, "still here")
            await watcher.feed.until(lambda f: len(f.messages()) == 1)
    assert presence(watcher.feed) == [(member.id, True)]


async def test_typing_and_presence_cross_server_processes(
    people: People, database_url: str, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with serve_atomchat(
        database_url=database_url,
        ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
        ATOMCHAT_PRESENCE_GRACE_SECONDS=str(GRACE),
    ) as other:
        remote = await dial(other.grpc_port, member)
        async with chat(owner, channel.id) as here:
            async with chat(remote, channel.id) as there:
                assert sorted(there.feed.of("joined")[0].online_user_ids) == sorted(
                    [owner.id, member.id]
                )
                await here.feed.until(lambda f: bool(f.of("presence")))
                assert await online_members(owner, channel.id) == {
                    owner.id: True,
                    member.id: True,
                }
                await set_typing(remote, channel.id)
                await here.feed.until(lambda f: bool(f.of("typing")))
                await here.call.write(chat_pb2.ChatStreamRequest(typing=chat_pb2.ChatTyping()))
                await there.feed.until(lambda f: bool(f.of("typing")))
            await here.feed.until(lambda f: len(f.of("presence")) == 2, timeout=GRACE + 5)
    assert presence(here.feed) == [(member.id, True), (member.id, False)]
    assert typists(here.feed.of("typing")) == [member.id]
    assert typists(there.feed.of("typing")) == [owner.id]


_CLIENT = """
import asyncio, sys
import grpc
from atomchat.v1 import chat_pb2, chat_pb2_grpc

async def main() -> None:
    port, token, channel_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as connection:
        call = chat_pb2_grpc.ChatServiceStub(connection).Subscribe(
            chat_pb2.SubscribeRequest(channel_id=channel_id),
            metadata=(("authorization", f"Bearer {token}"),),
        )
        async for frame in call:
            if frame.HasField("joined"):
                print("joined", flush=True)

asyncio.run(main())
"""


async def test_a_client_killed_without_a_goodbye_goes_offline(people: People, app: Any) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    async with chat(owner, channel.id) as watcher:
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT,
            str(app.port),
            member.token,
            str(channel.id),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert client.stdout is not None
            assert (await asyncio.wait_for(client.stdout.readline(), 20)).strip() == b"joined"
            await watcher.feed.until(lambda f: bool(f.of("presence")))
            os.kill(client.pid, signal.SIGKILL)
        finally:
            await client.wait()
        await watcher.feed.until(
            lambda f: len(f.of("presence")) == 2, timeout=TEST_SETTINGS.heartbeat_seconds
        )
    assert presence(watcher.feed) == [(member.id, True), (member.id, False)]


async def test_a_stream_whose_connection_is_reset_goes_offline(
    people: People, app: Any, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    proxy = TcpProxy("127.0.0.1", app.port)
    await proxy.start()
    try:
        remote = await dial(proxy.port, member)
        async with chat(owner, channel.id) as watcher, subscription(remote, channel.id) as doomed:
            await doomed.until(lambda f: bool(f.of("joined")))
            await watcher.feed.until(lambda f: bool(f.of("presence")))
            proxy.reset()
            await watcher.feed.until(
                lambda f: len(f.of("presence")) == 2, timeout=TEST_SETTINGS.heartbeat_seconds
            )
    finally:
        await proxy.close()
    assert presence(watcher.feed) == [(member.id, True), (member.id, False)]


async def test_the_users_of_a_killed_process_go_offline_within_the_heartbeat_window(
    people: People, database_url: str, dial: Dial
) -> None:
    owner, member = await people.user(), await people.user()
    channel = await people.channel(owner, members=(member,))
    heartbeat = 2.0
    options = {
        "database_url": database_url,
        "ATOMCHAT_JWT_SECRET": TEST_SETTINGS.jwt_secret,
        "ATOMCHAT_HEARTBEAT_SECONDS": str(heartbeat),
    }
    async with (
        serve_atomchat(**options) as staying,  # type: ignore[arg-type]
        serve_atomchat(**options) as doomed,  # type: ignore[arg-type]
    ):
        here = await dial(staying.grpc_port, owner)
        there = await dial(doomed.grpc_port, member)
        async with chat(here, channel.id) as watcher, subscription(there, channel.id) as stream:
            await stream.until(lambda f: bool(f.of("joined")))
            await watcher.feed.until(lambda f: bool(f.of("presence")))
            doomed.process.send_signal(signal.SIGKILL)
            await watcher.feed.until(lambda f: len(f.of("presence")) == 2, timeout=heartbeat * 5)
    assert presence(watcher.feed) == [(member.id, True), (member.id, False)]


async def test_presence_notices_stop_in_channels_past_the_notice_limit(
    people: People, database_url: str, dial: Dial
) -> None:
    app = App(with_settings(presence_notice_limit=2), database_url)
    await app.start()
    try:
        owner, first, second = await people.user(), await people.user(), await people.user()
        channel = await people.channel(owner, members=(first, second))
        here = [await dial(app.port, person) for person in (owner, first, second)]
        async with chat(here[0], channel.id) as watcher:
            async with chat(here[1], channel.id):
                await watcher.feed.until(lambda f: len(f.of("presence")) == 1)
                async with chat(here[2], channel.id) as third:
                    # Three online: past the limit, the crowd is not announced...
                    assert sorted(third.feed.of("joined")[0].online_user_ids) == sorted(
                        [owner.id, first.id, second.id]
                    )
                    assert await online_members(here[0], channel.id) == {
                        owner.id: True,
                        first.id: True,
                        second.id: True,
                    }
            # ... until it is back within it.
            await watcher.feed.until(lambda f: len(f.of("presence")) == 2, timeout=GRACE + 5)
            await asyncio.sleep(GRACE + 1)
    finally:
        await app.stop()
    assert presence(watcher.feed) == [(first.id, True), (first.id, False)]
