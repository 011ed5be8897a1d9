"""What the fault tests share: a PostgreSQL of their own, servers with short bounds,
senders that remember what was acknowledged, health as a client watches it,
and what the database ends up holding."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil
from atomchat.v1 import chat_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from atomchat_server.db.migrate import upgrade
from devsupport import Server
from devsupport.postgres import ScratchPostgres, scratch_postgres
from tests.chat_support import Chat, Feed
from tests.support import health_stub, sql

# ATOMCHAT_DATABASE_TIMEOUT of the servers under test: every call answers
# within it while the database cannot; short, so that each test stays short.
FAULT_TIMEOUT = 2.0
# How long a client waits for the answer to a call made during a fault: the
# bound, and as much again for a loaded machine. A call that hangs ends
# DEADLINE_EXCEEDED instead, and the test says so.
ANSWER_WITHIN = 2 * FAULT_TIMEOUT
# How long a test waits for one step of recovery (a reconnect, a resend).
RECOVERY_WAIT = 30.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.asynccontextmanager
async def own_database() -> AsyncIterator[tuple[ScratchPostgres, str]]:
    """A PostgreSQL of the test's own, migrated; the server and its URL."""
    async with scratch_postgres() as server:
        await upgrade(server.url)
        yield server, server.url


def retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay an error carries, in seconds, or None."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_details_pb2.RetryInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info):
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


class HealthWatch:
    """Every status a Health.Watch call on the whole server reports, in order."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.statuses: list[int] = []
        self._changed = asyncio.Event()
        self._call = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for response in self._call:
                self.statuses.append(response.status)
                self._changed.set()

    async def until(self, status: int, timeout: float = RECOVERY_WAIT) -> None:
        """Wait until the last status reported is `status`."""
        async with asyncio.timeout(timeout):
            while not self.statuses or self.statuses[-1] != status:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def watching_health(channel: grpc.aio.Channel) -> AsyncIterator[HealthWatch]:
    watch = HealthWatch(channel)
    try:
        yield watch
    finally:
        await watch.close()


@dataclass
class Ledger:
    """One sender's messages by client_message_id: what was acked (with its seq), and
    how the others were refused (the google.rpc.Code of their error frames)."""

    prefix: str
    sent: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def keys(self, count: int) -> list[str]:
        start = len(self.sent)
        return [f"{self.prefix}-{n}" for n in range(start, start + count)]

    async def send(self, stream: Chat, keys: list[str]) -> None:
        """Send `keys` (the content is the key) without waiting for their answers."""
        for key in keys:
            if key not in self.sent:
                self.sent.append(key)
            self.refused.pop(key, None)
            await stream.send(key, key)

    def take_answers(self, feed: Feed) -> None:
        """Note the acks and error frames `feed` holds."""
        for ack in feed.of("ack"):
            self.acked[ack.client_message_id] = ack.message.seq
            self.refused.pop(ack.client_message_id, None)
        for error in feed.of("error"):
            if error.client_message_id not in self.acked:
                self.refused[error.client_message_id] = error.code

    async def until_answered(self, stream: Chat, keys: list[str]) -> None:
        """Wait until every key has an ack or an error frame on `stream`."""

        def answered(feed: Feed) -> bool:
            done = {a.client_message_id for a in feed.of("ack")}
            done |= {e.client_message_id for e in feed.of("error")}
            return all(key in done for key in keys)

        await stream.feed.until(answered, timeout=RECOVERY_WAIT)
        self.take_answers(stream.feed)

    async def until_acked(self, stream: Chat, keys: list[str]) -> None:
        """Wait until every key has an ack on `stream` (resends, once the fault is over)."""

        def acked(feed: Feed) -> bool:
            done = {a.client_message_id for a in feed.of("ack")}
            return all(key in done for key in keys)

        await stream.feed.until(acked, timeout=RECOVERY_WAIT)
        self.take_answers(stream.feed)

    def unacked(self) -> list[str]:
        return [key for key in self.sent if key not in self.acked]


async def stored_keys(url: str, channel_id: int) -> list[tuple[int, str]]:
    """(seq, client_message_id) of every message stored in the channel, by seq."""
    rows = await sql(
        url,
        "SELECT seq, client_message_id FROM messages WHERE channel_id = $1 ORDER BY seq",
        channel_id,
    )
    return [(row["seq"], row["client_message_id"]) for row in rows]


def seqs_of(frames: list[Any]) -> list[int]:
    return [message.seq for message in frames]


def kill_hard(server: Server) -> None:
    """SIGKILL a child server at once, then whatever it had started (its hashing workers)."""
    children = psutil.Process(server.pid).children(recursive=True)
    server.process.send_signal(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=10)


def join_frame(channel_id: int, **options: Any) -> chat_pb2.ChatStreamRequest:
    return chat_pb2.ChatStreamRequest(join=chat_pb2.ChatJoin(channel_id=channel_id, **options))
