"""`python -m bench.replicas`: the same chat through Envoy, with 1 and with 2 replicas.

`atomchat serve --replicas N` (Envoy in front) on a fresh database; a load
generator in this process opens SUBSCRIBERS Subscribe streams per channel
and runs SENDERS closed-loop SendMessage callers per channel, all through
Envoy. Two runs per replica count:

- flat out: every sender sends its next message as soon as the last is
  answered; messages posted per second and SendMessage's p50/p99;
- paced: the same senders at a fixed total rate (by default half of what one
  replica did flat out), and the delay from a send to each stream's copy
  (p50/p99), which is what a reader feels.

Every copy is checked: each stream's seqs in order with no gap and no repeat.
Everything (PostgreSQL, Envoy, the replicas, this generator) shares the
machine's cores: on a small machine more replicas mostly compete for the
same CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from atomchat.v1 import chat_pb2, chat_pb2_grpc

from bench.database import JWT_SECRET, TOKEN_MINUTES, BenchDatabase, BenchUser, server_url
from bench.stats import percentile
from devsupport import fresh_database, serve_atomchat

CONNECTIONS = 4
JOIN_SECONDS = 60.0
DRAIN_SECONDS = 30.0


@dataclass
class Stream:
    """One Subscribe stream's copies: seqs in order, and when each arrived."""

    seqs: list[int] = field(default_factory=list)
    delays_us: list[int] = field(default_factory=list)
    joined: asyncio.Event = field(default_factory=asyncio.Event)

    def faults(self) -> tuple[int, int]:
        """(missing, repeated) seqs between the first and the last seen."""
        if not self.seqs:
            return 0, 0
        repeated = len(self.seqs) - len(set(self.seqs))
        ordered = all(b > a for a, b in itertools.pairwise(self.seqs))
        missing = self.seqs[-1] - self.seqs[0] + 1 - len(set(self.seqs))
        return missing, repeated + (0 if ordered else 1)


@dataclass
class Load:
    """Sent messages (content -> when sent), answers' delays, and the streams."""

    sent_at: dict[str, float] = field(default_factory=dict)
    answers_us: list[int] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    measuring: bool = False
    # Numbers the messages of every run: a client_message_id is never used twice.
    counter: itertools.count[int] = field(default_factory=itertools.count)


@dataclass(frozen=True, slots=True)
class Figures:
    replicas: int
    posted_per_second: float
    send_p50_ms: float
    send_p99_ms: float
    paced_rate: float
    delivery_p50_ms: float
    delivery_p99_ms: float
    copies: int
    missing: int
    repeated: int

    def row(self) -> str:
        return (
            f"| {self.replicas} | {self.posted_per_second:,.0f} | {self.send_p50_ms:.1f} | "
            f"{self.send_p99_ms:.1f} | {self.paced_rate:,.0f} | {self.delivery_p50_ms:.1f} | "
            f"{self.delivery_p99_ms:.1f} | {self.copies:,} | {self.missing} / {self.repeated} |"
        )


HEADER = (
    "| replicas | flat out: posts/s | send p50 ms | send p99 ms | paced: posts/s "
    "| delivery p50 ms | delivery p99 ms | copies | missing / repeated |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def metadata(user: BenchUser) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {user.token}"),)


async def subscribe(
    stub: chat_pb2_grpc.ChatServiceAsyncStub, user: BenchUser, channel_id: int, load: Load
) -> None:
    stream = Stream()
    load.streams.append(stream)
    call = stub.Subscribe(
        chat_pb2.SubscribeRequest(channel_id=channel_id, history_limit=0),
        metadata=metadata(user),
    )
    async for event in call:
        kind = event.WhichOneof("event")
        if kind == "joined":
            stream.joined.set()
        elif kind == "message":
            stream.seqs.append(event.message.seq)
            sent = load.sent_at.get(event.message.content)
            if load.measuring and sent is not None:
                stream.delays_us.append(int((time.perf_counter() - sent) * 1e6))


async def send(
    stub: chat_pb2_grpc.ChatServiceAsyncStub,
    user: BenchUser,
    channel_id: int,
    load: Load,
    *,
    until: float,
    interval: float | None,
) -> int:
    """Send until `until` (perf_counter), every `interval` seconds or flat out."""
    posted = 0
    next_at = time.perf_counter()
    while (now := time.perf_counter()) < until:
        if interval is not None:
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at += interval
        key = f"{user.id}-{next(load.counter)}"
        started = time.perf_counter()
        load.sent_at[key] = started
        await stub.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel_id, content=key, client_message_id=key),
            metadata=metadata(user),
        )
        load.answers_us.append(int((time.perf_counter() - started) * 1e6))
        posted += 1
    return posted


@contextlib.asynccontextmanager
async def connections(target: str) -> AsyncIterator[list[chat_pb2_grpc.ChatServiceAsyncStub]]:
    async with contextlib.AsyncExitStack() as stack:
        stubs = []
        for _ in range(CONNECTIONS):
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            )
            stubs.append(chat_pb2_grpc.ChatServiceStub(channel))
        yield stubs


async def senders_run(
    stubs: list[chat_pb2_grpc.ChatServiceAsyncStub],
    senders: list[tuple[BenchUser, int]],
    load: Load,
    *,
    seconds: float,
    rate: float | None,
) -> int:
    until = time.perf_counter() + seconds
    interval = len(senders) / rate if rate else None
    posted = await asyncio.gather(
        *(
            send(
                stubs[i % len(stubs)],
                user,
                channel,
                load,
                until=until,
                interval=interval,
            )
            for i, (user, channel) in enumerate(senders)
        )
    )
    return sum(posted)


async def until_delivered(load: Load, expected: int) -> None:
    """Wait until the streams hold `expected` copies in all."""
    async with asyncio.timeout(DRAIN_SECONDS):
        while sum(len(stream.seqs) for stream in load.streams) < expected:  # noqa: ASYNC110 - counted by the readers
            await asyncio.sleep(0.05)


async def run_one(
    url: str,
    replicas: int,
    senders: list[tuple[BenchUser, int]],
    subscribers: list[tuple[BenchUser, int]],
    *,
    seconds: float,
    rate: float | None,
) -> Figures:
    per_channel = {channel: 0 for _, channel in subscribers}
    for _, channel in subscribers:
        per_channel[channel] += 1
    async with (
        serve_atomchat(
            "--replicas",
            str(replicas),
            database_url=url,
            envoy=True,
            log_level="WARNING",
            ATOMCHAT_JWT_SECRET=JWT_SECRET,
            ATOMCHAT_TOKEN_MINUTES=str(TOKEN_MINUTES),
        ) as server,
        connections(f"127.0.0.1:{server.http_port}") as stubs,
    ):
        load = Load()
        reading = [
            asyncio.create_task(subscribe(stubs[i % len(stubs)], user, channel, load))
            for i, (user, channel) in enumerate(subscribers)
        ]
        try:
            async with asyncio.timeout(JOIN_SECONDS):
                while len(load.streams) < len(subscribers):  # noqa: ASYNC110 - tasks starting
                    await asyncio.sleep(0.01)
                for stream in load.streams:
                    await stream.joined.wait()
            copies_per_post = len(subscribers) / len(per_channel)

            # Warm-up, then flat out.
            await senders_run(stubs, senders, load, seconds=1.0, rate=None)
            load.answers_us.clear()
            posted = await senders_run(stubs, senders, load, seconds=seconds, rate=None)
            flat_rate = posted / seconds
            answers = sorted(load.answers_us)
            total_posts = len(load.sent_at)
            await until_delivered(load, int(total_posts * copies_per_post))

            paced = rate if rate is not None else flat_rate / 2
            for stream in load.streams:
                stream.delays_us.clear()
            load.measuring = True
            paced_posts = await senders_run(stubs, senders, load, seconds=seconds, rate=paced)
            await until_delivered(load, int((total_posts + paced_posts) * copies_per_post))
        finally:
            for task in reading:
                task.cancel()
            await asyncio.gather(*reading, return_exceptions=True)

    delays = sorted(delay for stream in load.streams for delay in stream.delays_us)
    faults = [stream.faults() for stream in load.streams]
    return Figures(
        replicas=replicas,
        posted_per_second=flat_rate,
        send_p50_ms=percentile(answers, 0.50) / 1000,
        send_p99_ms=percentile(answers, 0.99) / 1000,
        paced_rate=paced_posts / seconds,
        delivery_p50_ms=percentile(delays, 0.50) / 1000,
        delivery_p99_ms=percentile(delays, 0.99) / 1000,
        copies=sum(len(stream.seqs) for stream in load.streams),
        missing=sum(missing for missing, _ in faults),
        repeated=sum(repeated for _, repeated in faults),
    )


async def main_async(options: argparse.Namespace) -> list[Figures]:
    results: list[Figures] = []
    rate: float | None = options.rate
    for replicas in options.replicas:
        async with fresh_database(server_url(), prefix="atomchat_bench") as url:
            database = BenchDatabase(url)
            users = await database.add_users(
                options.channels * (options.senders + options.subscribers)
            )
            groups = [
                users[i * (options.senders + options.subscribers) :][
                    : options.senders + options.subscribers
                ]
                for i in range(options.channels)
            ]
            channels = await database.add_channels(groups)
            senders = [
                (user, channel)
                for channel, group in zip(channels, groups, strict=True)
                for user in group[: options.senders]
            ]
            subscribers = [
                (user, channel)
                for channel, group in zip(channels, groups, strict=True)
                for user in group[options.senders :]
            ]
            figures = await run_one(
                url, replicas, senders, subscribers, seconds=options.seconds, rate=rate
            )
        print(figures.row(), flush=True)
        results.append(figures)
        # Every replica count is paced at the same rate: half of the first's flat out.
        rate = rate if rate is not None else figures.posted_per_second / 2
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replicas", description="chat through Envoy with 1, 2… replicas"
    )
    parser.add_argument(
        "--replicas",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 2],
        help="replica counts to run, in order (1,2)",
    )
    parser.add_argument("--channels", type=int, default=4, help="channels (4)")
    parser.add_argument("--senders", type=int, default=4, help="senders per channel (4)")
    parser.add_argument("--subscribers", type=int, default=10, help="streams per channel (10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each run's length (10)")
    parser.add_argument(
        "--rate", type=float, help="paced posts/s in all (half the first flat-out rate)"
    )
    options = parser.parse_args(argv)
    print(HEADER, flush=True)
    asyncio.run(main_async(options))


if __name__ == "__main__":
    main()
