"""A login storm: concurrent clients calling UserService.Login over and over."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import grpc
from atomchat.v1 import users_pb2, users_pb2_grpc

from bench.job import LoginJob


class LoginStorm:
    def __init__(self, job: LoginJob, target: str) -> None:
        self._job = job
        self._connection = grpc.aio.insecure_channel(target)
        self._stub = users_pb2_grpc.UserServiceStub(self._connection)
        self._names = itertools.cycle(job.usernames)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.opened_ns = 1 << 62
        self.closed_ns = 1 << 62
        self.logins = 0
        self.errors: Counter[str] = Counter()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self._job.concurrency)]

    async def _client(self) -> None:
        request = users_pb2.LoginRequest(password=self._job.password)
        while not self._stopping:
            request.username = next(self._names)
            try:
                await self._stub.Login(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                self.errors[error.code().name] += 1
                continue
            if self.opened_ns <= time.monotonic_ns() < self.closed_ns:
                self.logins += 1

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks)
        await self._connection.close()
