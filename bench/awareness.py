"""Awareness through the real server: ListMyChannels for a user in 200 channels,
and inbox `activity` for 1000 users who each hold an inbox and a channel stream.

    python -m bench.awareness                   # both
    python -m bench.awareness --only channels   # ListMyChannels p50/p99 and its plan
    python -m bench.awareness --only inbox --users 1000 --senders 10 --rate 100

`channels`: one user is a member of 200 channels of 500 messages each
(interleaved, some mentioning them), and lists their channels, all 200 with
read states, in one page, again and again; the report gives p50/p99/max and
the statement's EXPLAIN ANALYZE, for markers as they typically stand (most
channels read up to the last few messages) and for markers far behind (at
random: 0-500 unread in every channel).

`inbox`: `users` users in channels of 20, each holding StreamInbox and a
Subscribe of their channel; `senders` more users (members of every channel)
post `rate` messages a second in all, into channels at random. For every
message and every member, the delay from the post to the first `activity`
on that member's inbox that covers it (activity carries the channel's last
seq, and a later one covers the earlier ones), and to the message on their
channel stream; and the server's RSS before and after the streams opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from atomchat.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    inbox_pb2,
    inbox_pb2_grpc,
)

from atomchat_server.domain import channel_rows
from bench.database import JWT_SECRET, TOKEN_MINUTES, BenchDatabase, BenchUser, server_url
from bench.memory import rss_mib
from bench.stats import summary
from devsupport import Server, fresh_database, serve_atomchat

RESULTS = Path("bench/results")
MY_CHANNELS = 200
MESSAGES_PER_CHANNEL = 500
CHANNEL_SIZE = 20
STREAMS_PER_CONNECTION = 100


def metadata(user: BenchUser) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {user.token}"),)


def start(url: str) -> contextlib.AbstractAsyncContextManager[Server]:
    return serve_atomchat(
        database_url=url,
        log_level="WARNING",
        ATOMCHAT_JWT_SECRET=JWT_SECRET,
        ATOMCHAT_TOKEN_MINUTES=str(TOKEN_MINUTES),
    )


# -- ListMyChannels


def marker(rng: random.Random, last_seq: int, behind: str) -> int:
    """Where the reader's marker stands in a channel: "far" anywhere at random;
    "typical" mostly near the end (80% within 10 messages, 15% within 100)."""
    if behind == "far":
        return rng.randint(0, last_seq)
    roll = rng.random()
    lag = rng.randint(0, 10) if roll < 0.8 else rng.randint(0, 100) if roll < 0.95 else last_seq
    return max(0, last_seq - lag)


async def fill_channels(url: str, rng: random.Random, behind: str) -> BenchUser:
    """The reader's 200 channels with their messages and markers."""
    database = BenchDatabase(url)
    reader, poster = await database.add_users(2)
    channels = await database.add_channels([[poster, reader]] * MY_CHANNELS)
    connection = await asyncpg.connect(url)
    try:
        rows = []
        seqs = dict.fromkeys(channels, 0)
        for _ in range(MY_CHANNELS * MESSAGES_PER_CHANNEL):
            channel_id = rng.choice(channels)
            seqs[channel_id] += 1
            mentions = [reader.id] if rng.random() < 0.05 else []
            rows.append((channel_id, seqs[channel_id], poster.id, "message", mentions))
        await connection.copy_records_to_table(
            "messages",
            records=rows,
            columns=["channel_id", "seq", "sender_id", "content", "mention_user_ids"],
        )
        await connection.execute(
            "UPDATE channels SET last_seq = v.last_seq"
            " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, last_seq) WHERE channels.id = v.id",
            list(seqs),
            list(seqs.values()),
        )
        await connection.execute(
            "UPDATE channel_members m SET last_read_seq = v.marker"
            " FROM unnest($1::bigint[], $2::bigint[]) AS v(id, marker)"
            " WHERE m.channel_id = v.id AND m.user_id = $3",
            list(seqs),
            [marker(rng, last, behind) for last in seqs.values()],
            reader.id,
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return reader


async def explain(url: str, user_id: int) -> str:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET plan_cache_mode = force_custom_plan")
        rows = await connection.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + channel_rows.MY_CHANNELS,
            user_id,
            0,
            MY_CHANNELS + 1,
        )
    finally:
        await connection.close()
    return "\n".join(row[0] for row in rows)


async def list_my_channels(rounds: int, seed: int, behind: str) -> dict[str, Any]:
    rng = random.Random(seed)
    async with fresh_database(server_url(), prefix="atomchat_bench") as url:
        reader = await fill_channels(url, rng, behind)
        async with start(url) as server, grpc.aio.insecure_channel(server.address) as channel:
            stub = channels_pb2_grpc.ChannelServiceStub(channel)
            request = channels_pb2.ListMyChannelsRequest(page_size=MY_CHANNELS)
            timings: list[float] = []
            unread = 0
            for round_number in range(rounds + 20):
                began = time.perf_counter()
                page = await stub.ListMyChannels(request, metadata=metadata(reader))
                if round_number >= 20:  # the first ones warm the caches
                    timings.append(time.perf_counter() - began)
                unread = sum(c.read_state.unread_count for c in page.channels)
            assert len(page.channels) == MY_CHANNELS
        plan = await explain(url, reader.id)
    return {
        "markers": behind,
        "channels": MY_CHANNELS,
        "messages": MY_CHANNELS * MESSAGES_PER_CHANNEL,
        "unread_in_all": unread,
        "ListMyChannels": summary(timings),
        "plan": plan.splitlines(),
    }


# -- the inbox


class Tracker:
    """When each message was posted and when each stream heard of what; the delays
    are worked out at the end (a stream may hear of a message before its post returns)."""

    def __init__(self) -> None:
        # (channel, seq) -> when its post began
        self.posted: dict[tuple[int, int], float] = {}
        # (channel, user) -> [(when, last seq covered)] of their inbox's activity
        self.activity: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
        # (channel, seq) -> when each stream of the channel got the message
        self.delivered: dict[tuple[int, int], list[float]] = defaultdict(list)

    def heard_activity(self, channel_id: int, user_id: int, last_seq: int) -> None:
        self.activity[(channel_id, user_id)].append((time.perf_counter(), last_seq))

    def heard_message(self, channel_id: int, seq: int) -> None:
        self.delivered[(channel_id, seq)].append(time.perf_counter())

    def activity_delays(self, members: dict[int, list[int]]) -> tuple[list[float], int]:
        """For every measured message and member: post to the first activity covering it;
        and how many (message, member) pairs no activity covered."""
        delays: list[float] = []
        missed = 0
        for (channel_id, seq), began in self.posted.items():
            for user_id in members[channel_id]:
                heard = self.activity.get((channel_id, user_id), [])
                first = next((when for when, covered in heard if covered >= seq), None)
                if first is None:
                    missed += 1
                else:
                    delays.append(first - began)
        return delays, missed

    def message_delays(self) -> list[float]:
        return [
            when - self.posted[key]
            for key, arrivals in self.delivered.items()
            if key in self.posted
            for when in arrivals
        ]


async def hold_inbox(
    stub: inbox_pb2_grpc.InboxServiceAsyncStub, user: BenchUser, tracker: Tracker, opened: Any
) -> None:
    call = stub.StreamInbox(inbox_pb2.StreamInboxRequest(), metadata=metadata(user))
    await call.initial_metadata()
    opened()
    async for event in call:
        if event.HasField("activity"):
            tracker.heard_activity(event.activity.channel_id, user.id, event.activity.last_seq)


async def hold_channel(
    stub: chat_pb2_grpc.ChatServiceAsyncStub,
    user: BenchUser,
    channel_id: int,
    tracker: Tracker,
    opened: Any,
) -> None:
    call = stub.Subscribe(
        chat_pb2.SubscribeRequest(channel_id=channel_id, history_limit=0, max_batch=100),
        metadata=metadata(user),
    )
    async for event in call:
        kind = event.WhichOneof("event")
        if kind == "joined":
            opened()
        elif kind == "message":
            tracker.heard_message(channel_id, event.message.seq)
        elif kind == "messages":
            for message in event.messages.messages:
                tracker.heard_message(channel_id, message.seq)


async def send(
    stub: chat_pb2_grpc.ChatServiceAsyncStub,
    sender: BenchUser,
    channels: list[int],
    tracker: Tracker,
    *,
    interval: float,
    until: float,
    rng: random.Random,
    measuring: bool,
) -> int:
    sent = 0
    next_at = time.perf_counter()
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        channel_id = rng.choice(channels)
        began = time.perf_counter()
        message = await stub.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel_id, content="hello"),
            metadata=metadata(sender),
        )
        if measuring:
            tracker.posted[(channel_id, message.seq)] = began
        sent += 1
        next_at += interval
    return sent


async def inbox(
    users: int, senders: int, rate: float, seconds: float, seed: int, *, with_inbox: bool
) -> dict[str, Any]:
    rng = random.Random(seed)
    async with fresh_database(server_url(), prefix="atomchat_bench") as url:
        database = BenchDatabase(url)
        people = await database.add_users(users + senders)
        readers, writers = people[:users], people[users:]
        groups = [readers[i : i + CHANNEL_SIZE] for i in range(0, users, CHANNEL_SIZE)]
        channels = await database.add_channels([[*writers, *group] for group in groups])
        channel_of = {
            user.id: channel
            for channel, group in zip(channels, groups, strict=True)
            for user in group
        }
        tracker = Tracker()
        async with start(url) as server:
            rss_before = rss_mib(server)
            connections = [
                grpc.aio.insecure_channel(
                    server.address, options=[("grpc.use_local_subchannel_pool", 1)]
                )
                for _ in range(max(1, 2 * users // STREAMS_PER_CONNECTION))
            ]
            opened = 0
            streams = (2 if with_inbox else 1) * users
            all_open = asyncio.Event()

            def one_opened() -> None:
                nonlocal opened
                opened += 1
                if opened == streams:
                    all_open.set()

            tasks = []
            for number, reader in enumerate(readers):
                connection = connections[(2 * number) % len(connections)]
                if with_inbox:
                    stub = inbox_pb2_grpc.InboxServiceStub(connection)
                    tasks.append(asyncio.create_task(hold_inbox(stub, reader, tracker, one_opened)))
                tasks.append(
                    asyncio.create_task(
                        hold_channel(
                            chat_pb2_grpc.ChatServiceStub(connection),
                            reader,
                            channel_of[reader.id],
                            tracker,
                            one_opened,
                        )
                    )
                )
            async with asyncio.timeout(300):
                await all_open.wait()
            await asyncio.sleep(2)
            rss_open = rss_mib(server)
            sending = grpc.aio.insecure_channel(server.address)
            chat = chat_pb2_grpc.ChatServiceStub(sending)
            interval = senders / rate

            async def load(seconds: float, *, measuring: bool) -> list[int]:
                until = time.perf_counter() + seconds
                return await asyncio.gather(
                    *(
                        send(
                            chat,
                            w,
                            channels,
                            tracker,
                            interval=interval,
                            until=until,
                            rng=rng,
                            measuring=measuring,
                        )
                        for w in writers
                    )
                )

            await load(3, measuring=False)
            sent = await load(seconds, measuring=True)
            await asyncio.sleep(2)
            rss_after = rss_mib(server)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sending.close()
            for connection in connections:
                await connection.close()
    members: dict[int, list[int]] = defaultdict(list)
    for user_id, channel_id in channel_of.items():
        members[channel_id].append(user_id)
    activity_delays, missed = tracker.activity_delays(members) if with_inbox else ([], 0)
    return {
        "users": users,
        "streams": streams,
        "senders": senders,
        "rate_per_second": rate,
        "seconds": seconds,
        "messages": sum(sent),
        "inbox streams": with_inbox,
        "activity (post to inbox)": summary(activity_delays),
        "activity missed": missed,
        "message (post to channel stream)": summary(tracker.message_delays()),
        "server_rss_mib": {
            "before streams": round(rss_before, 1),
            "streams open": round(rss_open, 1),
            "after load": round(rss_after, 1),
        },
    }


async def main(options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if options.only in (None, "channels"):
        report["list_my_channels"] = [
            await list_my_channels(options.rounds, options.seed, behind)
            for behind in ("typical", "far")
        ]
    if options.only in (None, "inbox"):
        # The same load without inbox streams, then with them: what the inbox costs.
        report["inbox"] = [
            await inbox(
                options.users,
                options.senders,
                options.rate,
                options.seconds,
                options.seed,
                with_inbox=with_inbox,
            )
            for with_inbox in (False, True)
        ]
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["channels", "inbox"])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="messages a second, in all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    report = asyncio.run(main(options))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "awareness.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli()
