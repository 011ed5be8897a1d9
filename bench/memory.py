"""The server's memory around many streams: RSS before, with them open, after they close.

Streams are opened as a chat client would (ChatStream, `join`, wait for
`joined`) and closed by cancelling the calls and dropping the connections,
which is what a client that goes away does to the server. Several rounds
tell a one-off growth (allocator, caches) from a leak per stream.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import psutil

from bench.streams import JOIN_CONCURRENCY, Stream, connect, open_call
from bench.tracking import ChannelTracker, Window
from devsupport import Server

SETTLE_SECONDS = 3.0


@dataclass(slots=True)
class MemoryFigure:
    streams: int
    baseline_mib: float
    rounds: list[tuple[float, float]] = field(default_factory=list)

    def describe(self) -> str:
        rounds = ", ".join(
            f"open {opened:.1f} / closed {closed:.1f}" for opened, closed in self.rounds
        )
        return f"RSS MiB, {self.streams} streams: baseline {self.baseline_mib:.1f}; {rounds}"


def rss_mib(server: Server) -> float:
    return float(psutil.Process(server.pid).memory_info().rss) / (1 << 20)


async def _round(server: Server, channel_id: int, tokens: list[str], per_connection: int) -> float:
    """Open a stream per token, read the RSS, close them all; returns that RSS."""
    connections = [connect(server.address) for _ in range(math.ceil(len(tokens) / per_connection))]
    tracker = ChannelTracker(channel_id, len(tokens))
    window = Window()
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)
    streams = [
        Stream(open_call(connections[index % len(connections)], token), tracker, window)
        for index, token in enumerate(tokens)
    ]

    async def join(stream: Stream) -> None:
        async with gate:
            await stream.join(max_batch=0)

    try:
        await asyncio.gather(*(join(stream) for stream in streams))
        await asyncio.sleep(SETTLE_SECONDS)
        return rss_mib(server)
    finally:
        for stream in streams:
            stream.call.cancel()
        for connection in connections:
            await connection.close()


async def measure(
    server: Server, channel_id: int, tokens: list[str], *, rounds: int, per_connection: int
) -> MemoryFigure:
    await asyncio.sleep(SETTLE_SECONDS)
    figure = MemoryFigure(streams=len(tokens), baseline_mib=rss_mib(server))
    for _ in range(rounds):
        opened = await _round(server, channel_id, tokens, per_connection)
        await asyncio.sleep(SETTLE_SECONDS)
        figure.rounds.append((opened, rss_mib(server)))
    return figure
