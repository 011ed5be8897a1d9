"""Unary calls at a steady pace, from a process of their own: what other users feel.

The probe calls `UserService.GetMe` (authentication, then one read) on a
fixed schedule, whether or not earlier calls have answered (open loop: a
server that stalls shows as many slow calls, not as one), and records when
each call started, how long it took and how it ended. It runs in its own
process so that whatever the benchmark's main process is busy with (opening
thousands of streams) does not count as the server's latency.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import grpc
import uvloop
from atomchat.v1 import users_pb2, users_pb2_grpc

from bench import stats

CALL_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Call:
    started_ns: int
    milliseconds: float
    # The status code's name: OK, or how it failed.
    code: str


async def _probe(target: str, token: str, rate: float, stop: Event) -> list[Call]:
    connection = grpc.aio.insecure_channel(target)
    stub = users_pb2_grpc.UserServiceStub(connection)
    metadata = (("authorization", f"Bearer {token}"),)
    calls: list[Call] = []
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        started = time.monotonic_ns()
        code = "OK"
        try:
            await stub.GetMe(users_pb2.GetMeRequest(), metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        calls.append(Call(started, (time.monotonic_ns() - started) / 1e6, code))

    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    next_at = loop.time()
    while not stop.is_set():
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    await asyncio.gather(*pending)
    await connection.close()
    return calls


def _run(target: str, token: str, rate: float, stop: Event, results: Connection) -> None:
    results.send(uvloop.run(_probe(target, token, rate, stop)))


class Probe:
    """A probe process: `start`, then `stop` returns every call it made."""

    def __init__(self, target: str, token: str, *, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run, args=(target, token, rate, self._stop, sender), name="probe", daemon=True
        )

    def start(self) -> None:
        self._process.start()

    async def stop(self) -> list[Call]:
        self._stop.set()
        calls: list[Call] = await asyncio.to_thread(self._results.recv)
        await asyncio.to_thread(self._process.join)
        return calls


@dataclass(frozen=True, slots=True)
class Latency:
    """The calls that started inside one window."""

    calls: int
    p50: float
    p99: float
    max: float
    errors: dict[str, int]

    @classmethod
    def of(cls, calls: list[Call], start_ns: int, end_ns: int) -> Latency:
        inside = [call for call in calls if start_ns <= call.started_ns < end_ns]
        ordered = sorted(int(call.milliseconds * 1000) for call in inside)
        errors: dict[str, int] = {}
        for call in inside:
            if call.code != "OK":
                errors[call.code] = errors.get(call.code, 0) + 1
        return cls(
            calls=len(inside),
            p50=stats.percentile(ordered, 0.50) / 1000,
            p99=stats.percentile(ordered, 0.99) / 1000,
            max=stats.percentile(ordered, 1.0) / 1000,
            errors=errors,
        )

    def describe(self) -> str:
        failed = f", errors {self.errors}" if self.errors else ""
        return (
            f"{self.calls} calls, p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms,"
            f" max {self.max:.1f} ms{failed}"
        )
