"""A login storm: concurrent clients calling UserService.Login over and over.

The clients run in a process of their own, as other users' clients would:
their work then competes with the chat streams for the machine, not for the
generator's event loop, whose delays would count as chat latency.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import grpc
import uvloop
from atomchat.v1 import users_pb2, users_pb2_grpc

from bench.job import LoginJob


async def _storm(job: LoginJob, target: str, stop: Event) -> tuple[list[int], dict[str, int]]:
    """Log in until `stop` is set; returns when each login ended, and errors by status."""
    connection = grpc.aio.insecure_channel(target)
    stub = users_pb2_grpc.UserServiceStub(connection)
    names = itertools.cycle(job.usernames)
    ended: list[int] = []
    errors: Counter[str] = Counter()

    async def client() -> None:
        request = users_pb2.LoginRequest(password=job.password)
        while not stop.is_set():
            request.username = next(names)
            try:
                await stub.Login(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                continue
            ended.append(time.monotonic_ns())

    await asyncio.gather(*(client() for _ in range(job.concurrency)))
    await connection.close()
    return ended, dict(errors)


def _run(job: LoginJob, target: str, stop: Event, results: Connection) -> None:
    results.send(uvloop.run(_storm(job, target, stop)))


class LoginStorm:
    def __init__(self, job: LoginJob, target: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run, args=(job, target, self._stop, sender), name="login-storm", daemon=True
        )
        self.opened_ns = 1 << 62
        self.closed_ns = 1 << 62
        self.logins = 0
        self.errors: Counter[str] = Counter()

    def start(self) -> None:
        self._process.start()

    async def stop(self) -> None:
        self._stop.set()
        ended, errors = await asyncio.to_thread(self._results.recv)
        await asyncio.to_thread(self._process.join)
        self.logins = sum(1 for at in ended if self.opened_ns <= at < self.closed_ns)
        self.errors = Counter(errors)
