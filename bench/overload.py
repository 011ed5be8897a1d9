"""A burst: thousands of streams opened at once, and what it does to everyone else.

Every stream of the burst is opened at the same moment (ChatStream, `join`
written at once, no client-side pacing) over HTTP/2 connections shared by
`per_connection` streams, and each is counted by how it was answered:
`joined`, or the status it failed with (and whether a RESOURCE_EXHAUSTED or
UNAVAILABLE carried google.rpc.RetryInfo, which tells the client when to
come back). Meanwhile a probe process (bench/probe.py) calls GetMe at a
steady pace; its latency before the burst (quiet) and during it (from the
first `join` until every stream was answered) are compared. The streams are
then closed, and the next round starts after a quiet window again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from atomchat.v1 import chat_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bench.probe import Latency, Probe
from bench.streams import Call, connect, open_call
from devsupport import Server

SETTLE_SECONDS = 2.0
JOINED = "joined"
RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


@dataclass(slots=True)
class BurstRound:
    streams: int
    # How the streams were answered: JOINED or a status code's name (with
    # "+RetryInfo" when it carried one).
    outcomes: dict[str, int]
    # From the first `join` until every stream was answered.
    seconds: float
    quiet: Latency
    burst: Latency

    def describe(self) -> str:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        ratio = self.burst.p99 / self.quiet.p99 if self.quiet.p99 else 0.0
        return (
            f"{self.streams} streams at once: {outcomes}; all answered in {self.seconds:.1f} s\n"
            f"    GetMe quiet:  {self.quiet.describe()}\n"
            f"    GetMe burst:  {self.burst.describe()}  (p99 x{ratio:.1f})"
        )


@dataclass(slots=True)
class BurstFigure:
    rounds: list[BurstRound] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"Burst, round {n}: {r.describe()}" for n, r in enumerate(self.rounds, 1)]
        return "\n".join(lines)


def _has_retry_info(error: grpc.aio.AioRpcError) -> bool:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_details_pb2.RetryInfo()
    return status is not None and any(detail.Unpack(info) for detail in status.details)


def _outcome(error: grpc.aio.AioRpcError) -> str:
    code = error.code()
    name = code.name
    if code in RETRYABLE and _has_retry_info(error):
        name += "+RetryInfo"
    return name


async def _answer(call: Call, channel_id: int) -> str:
    """Join; how the server answered."""
    try:
        await call.write(
            chat_pb2.ChatStreamRequest(
                join=chat_pb2.ChatJoin(channel_id=channel_id, history_limit=0)
            )
        )
        first = await call.read()
    except grpc.aio.AioRpcError as error:
        return _outcome(error)
    if isinstance(first, chat_pb2.ChatStreamResponse) and first.HasField("joined"):
        return JOINED
    code = await call.code()
    return f"ended {code.name} before joined"


async def burst_once(
    server: Server, channel_id: int, tokens: list[str], per_connection: int
) -> tuple[Counter[str], int, int]:
    """Open a stream per token at once; returns the outcomes, and when it started and ended."""
    connections = [connect(server.address) for _ in range(math.ceil(len(tokens) / per_connection))]
    calls = [
        open_call(connections[index // per_connection], token) for index, token in enumerate(tokens)
    ]
    try:
        started = time.monotonic_ns()
        answers = await asyncio.gather(*(_answer(call, channel_id) for call in calls))
        ended = time.monotonic_ns()
    finally:
        for call in calls:
            call.cancel()
        for connection in connections:
            await connection.close()
    return Counter(answers), started, ended


async def measure(
    server: Server,
    channel_id: int,
    tokens: list[str],
    probe_token: str,
    *,
    rounds: int,
    per_connection: int,
    quiet_seconds: float,
    probe_rate: float,
) -> BurstFigure:
    probe = Probe(server.address, probe_token, rate=probe_rate)
    probe.start()
    windows: list[tuple[int, int, int, Counter[str]]] = []
    try:
        for _ in range(rounds):
            quiet_from = time.monotonic_ns()
            await asyncio.sleep(quiet_seconds)
            outcomes, started, ended = await burst_once(server, channel_id, tokens, per_connection)
            windows.append((quiet_from, started, ended, outcomes))
            await asyncio.sleep(SETTLE_SECONDS)
    finally:
        calls = await probe.stop()
    figure = BurstFigure()
    for quiet_from, started, ended, outcomes in windows:
        figure.rounds.append(
            BurstRound(
                streams=len(tokens),
                outcomes=dict(outcomes),
                seconds=(ended - started) / 1e9,
                quiet=Latency.of(calls, quiet_from, started),
                burst=Latency.of(calls, started, ended),
            )
        )
    return figure
