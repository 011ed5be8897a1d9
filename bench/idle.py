"""Many idle streams: what each costs the server while nothing is said but heartbeats.

A fresh server beating every `heartbeat` seconds; its RSS and open file
descriptors before any stream, with every stream joined, and after they
closed. Streams are ChatStreams joined to one quiet channel, opened as
clients would (JOIN_CONCURRENCY at a time) over HTTP/2 connections shared
by `per_connection` streams; each counts the heartbeats it receives. They
are held until every stream has had a heartbeat, and over the next
`hold` seconds the server's CPU is measured: what idle streams cost.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import grpc
import psutil
from atomchat.v1 import chat_pb2

from bench.streams import JOIN_CONCURRENCY, Call, connect, open_call
from devsupport import Server

SETTLE_SECONDS = 3.0
# How long streams may take to get their first heartbeat, in heartbeat intervals.
BEAT_PATIENCE = 4


@dataclass(slots=True)
class IdleFigure:
    streams: int
    heartbeat_seconds: float
    baseline_mib: float
    open_mib: float
    closed_mib: float
    baseline_files: int
    open_files: int
    opening_seconds: float
    hold_seconds: float
    # The server's CPU while the streams only got heartbeats, % of one core.
    idle_cpu: float
    heartbeats: int
    without_heartbeat: int
    failed: int

    @property
    def kib_per_stream(self) -> float:
        return (self.open_mib - self.baseline_mib) * 1024 / self.streams

    def describe(self) -> str:
        return (
            f"Idle streams: {self.streams} ChatStreams opened in {self.opening_seconds:.0f} s,"
            f" heartbeat every {self.heartbeat_seconds:g} s; server RSS {self.baseline_mib:.1f}"
            f" MiB before, {self.open_mib:.1f} MiB with them open"
            f" ({self.kib_per_stream:.1f} KiB per stream), {self.closed_mib:.1f} MiB after"
            f" they closed; fds {self.baseline_files} -> {self.open_files}; server CPU"
            f" {self.idle_cpu:.1f}% over {self.hold_seconds:.0f} s of heartbeats only;"
            f" {self.heartbeats} heartbeats received, {self.without_heartbeat} streams"
            f" without one, {self.failed} streams failed"
        )


class _Idle:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.heartbeats = 0
        self.failed = ""
        self.beat = asyncio.Event()

    async def join(self, channel_id: int) -> None:
        join = chat_pb2.ChatJoin(channel_id=channel_id, history_limit=0)
        await self.call.write(chat_pb2.ChatStreamRequest(join=join))
        first = await self.call.read()
        if not isinstance(first, chat_pb2.ChatStreamResponse) or not first.HasField("joined"):
            raise RuntimeError(f"expected `joined`, got {first!r}")

    async def listen(self) -> None:
        try:
            while True:
                frame = await self.call.read()
                if not isinstance(frame, chat_pb2.ChatStreamResponse):
                    return
                if frame.HasField("heartbeat"):
                    self.heartbeats += 1
                    self.beat.set()
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.failed = error.code().name


def _rss_mib(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / (1 << 20)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(
    server: Server,
    channel_id: int,
    tokens: list[str],
    *,
    per_connection: int,
    heartbeat_seconds: float,
    hold: float,
    beats: bool = True,
) -> IdleFigure:
    """Open one stream per token, hold them, close them. `beats` False: the
    server sends no heartbeats (the bare server), so none is waited for."""
    process = psutil.Process(server.pid)
    await asyncio.sleep(SETTLE_SECONDS)
    baseline_mib, baseline_files = _rss_mib(process), process.num_fds()
    connections = [connect(server.address) for _ in range(math.ceil(len(tokens) / per_connection))]
    streams = [
        _Idle(open_call(connections[index // per_connection], token))
        for index, token in enumerate(tokens)
    ]
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)
    listeners: list[asyncio.Task[None]] = []

    async def join(stream: _Idle) -> None:
        async with gate:
            await stream.join(channel_id)
        listeners.append(asyncio.create_task(stream.listen()))

    try:
        started = time.monotonic()
        await asyncio.gather(*(join(stream) for stream in streams))
        opening = time.monotonic() - started
        try:
            async with asyncio.timeout(BEAT_PATIENCE * heartbeat_seconds + SETTLE_SECONDS):
                if beats:
                    await asyncio.gather(*(stream.beat.wait() for stream in streams))
        except TimeoutError:
            pass
        cpu_before = _cpu_seconds(process)
        await asyncio.sleep(hold)
        idle_cpu = 100.0 * (_cpu_seconds(process) - cpu_before) / hold
        open_mib, open_files = _rss_mib(process), process.num_fds()
    finally:
        for stream in streams:
            stream.call.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for connection in connections:
            await connection.close()
    await asyncio.sleep(SETTLE_SECONDS)
    return IdleFigure(
        streams=len(streams),
        heartbeat_seconds=heartbeat_seconds,
        baseline_mib=baseline_mib,
        open_mib=open_mib,
        closed_mib=_rss_mib(process),
        baseline_files=baseline_files,
        open_files=open_files,
        opening_seconds=opening,
        hold_seconds=hold,
        idle_cpu=idle_cpu,
        heartbeats=sum(stream.heartbeats for stream in streams),
        without_heartbeat=sum(1 for stream in streams if not stream.heartbeats),
        failed=sum(1 for stream in streams if stream.failed),
    )
