"""`atomchat serve --replicas 3` behind its Envoy, one replica SIGKILLed during a chat.

What users see: the streams that replica held end UNAVAILABLE, the others
go on; each reader reconnects through Envoy and resumes with after_seq on a
live replica, each sender resends what was not acknowledged with the same
client_message_id; every reader ends up with every message once, in seq
order, and the database holds each sent message once. Within Envoy's
health-check interval the dead replica gets no more calls; later the
parent starts it again on the same port, and Envoy sends it calls again.
Runs its own PostgreSQL (never the shared one).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from atomchat.v1 import chat_pb2, users_pb2
from google.rpc import code_pb2

from atomchat_server.config import ConfigError, Settings
from atomchat_server.edge.admin import Admin, Host
from atomchat_server.edge.config import CLUSTER
from atomchat_server.replicas import replica_port
from devsupport import Server, serve_atomchat
from tests.conftest import TEST_SETTINGS
from tests.faults.fault_support import FAULT_TIMEOUT, RECOVERY_WAIT, own_database, stored_keys
from tests.support import Api, People, Person, eventually

REPLICAS = 3
READERS = 6
SENDERS = 3
# Messages every reader has seen before the kill, and after it.
BEFORE_KILL = 20
AFTER_KILL = 30
# Long enough for the test to watch Envoy take the dead replica out of the
# rotation before the parent starts it again.
RESTART_SECONDS = 12.0
# Envoy's checks (envoy.yaml): every second, out after two failures, each
# waiting up to a second; and as much again for a loaded machine.
OUT_OF_ROTATION_WITHIN = 2 * (2 * 1.0 + 1.0)
# Calls Envoy retried on another replica (envoy.yaml: only when no server can have run them).
RETRIES = f"cluster.{CLUSTER}.upstream_rq_retry"
# Calls Envoy spread over every replica because too few passed their checks.
PANICS = f"cluster.{CLUSTER}.lb_healthy_panic"
PANIC_ROUNDS = 10
# How long a client waits before it reconnects.
RECONNECT_PAUSE = 0.05


def resumable(code: grpc.StatusCode, details: str) -> bool:
    """How a stream ends when its replica dies: UNAVAILABLE, or through Envoy, which
    can only reset a stream whose server vanished after answering, INTERNAL from the
    HTTP/2 reset ("Stream removed (RST_STREAM …)"; gRPC maps the reset to INTERNAL)."""
    return code == grpc.StatusCode.UNAVAILABLE or (
        code == grpc.StatusCode.INTERNAL and "RST_STREAM" in details
    )


# Between two sends, so that the chat is still going when the replica dies.
SEND_PAUSE = 0.02


@dataclass
class Reader:
    """A Subscribe that resumes with after_seq whenever its stream ends UNAVAILABLE."""

    person: Person
    channel_id: int
    seqs: list[int] = field(default_factory=list)
    endings: list[grpc.StatusCode] = field(default_factory=list)
    joins: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            after = {"after_seq": self.seqs[-1]} if self.seqs else {"history_limit": 0}
            call = self.person.api.chat.Subscribe(
                chat_pb2.SubscribeRequest(channel_id=self.channel_id, **after)
            )
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "joined":
                        self.joins += 1
                    elif kind == "message":
                        self.seqs.append(event.message.seq)
                    self.changed.set()
            except grpc.aio.AioRpcError as error:
                self.endings.append(error.code())
                if not resumable(error.code(), error.details() or ""):
                    raise
            else:
                raise AssertionError("a Subscribe stream ended without a status")
            await asyncio.sleep(RECONNECT_PAUSE)

    async def until_joined(self) -> None:
        async with asyncio.timeout(RECOVERY_WAIT):
            while not self.joins:
                self.changed.clear()
                await self.changed.wait()

    async def until(self, last_seq: int) -> None:
        async with asyncio.timeout(RECOVERY_WAIT):
            while not self.seqs or self.seqs[-1] < last_seq:
                self.changed.clear()
                await self.changed.wait()


class EndedBeforeWrite(Exception):
    """A write to a stream that had already ended."""


async def write(call: Any, request: chat_pb2.ChatStreamRequest) -> None:
    """Write `request`; EndedBeforeWrite if the stream had ended (grpc.aio then reports
    InvalidStateError, or INTERNAL "Internal error from Core" in place of the status the
    stream ended with, e.g. Envoy's UNAVAILABLE for a replica it could not reach)."""
    try:
        await call.write(request)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
        raise EndedBeforeWrite from error


@dataclass
class Sender:
    """A ChatStream that sends one message at a time until told to stop, and after its
    stream ends as a dead replica's do, reconnects and sends the unacknowledged one
    again."""

    person: Person
    channel_id: int
    prefix: str
    stop: asyncio.Event
    acked: dict[str, int] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    endings: list[grpc.StatusCode] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            call = self.person.api.chat.ChatStream()
            try:
                await write(
                    call,
                    chat_pb2.ChatStreamRequest(
                        join=chat_pb2.ChatJoin(channel_id=self.channel_id, history_limit=0)
                    ),
                )
                frames = aiter(call)
                while (await anext(frames)).WhichOneof("frame") != "joined":
                    pass
                if await self._send_until_stopped(call, frames):
                    return
            except EndedBeforeWrite:
                # Its status is lost; the next attempt reads the next one.
                self.endings.append(grpc.StatusCode.UNKNOWN)
            except grpc.aio.AioRpcError as error:
                self.endings.append(error.code())
                if not resumable(error.code(), error.details() or ""):
                    raise
            finally:
                call.cancel()
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _send_until_stopped(self, call: Any, frames: AsyncIterator[Any]) -> bool:
        """Send and wait for each ack; True once stopped with everything acknowledged."""
        while True:
            pending = [key for key in self.sent if key not in self.acked]
            if not pending:
                if self.stop.is_set():
                    return True
                pending = [f"{self.prefix}-{len(self.sent)}"]
                self.sent.extend(pending)
            [key] = pending
            await write(
                call,
                chat_pb2.ChatStreamRequest(
                    send=chat_pb2.ChatSend(content=key, client_message_id=key)
                ),
            )
            while True:
                frame = await anext(frames)
                kind = frame.WhichOneof("frame")
                if kind == "ack" and frame.ack.client_message_id == key:
                    self.acked[key] = frame.ack.message.seq
                    break
                if kind == "error":
                    # A database slower than the bound (a loaded machine) is
                    # answered UNAVAILABLE: a client sends the same id again.
                    assert frame.error.code == code_pb2.UNAVAILABLE, frame
                    break
            await asyncio.sleep(SEND_PAUSE)


def envoy_admin(data_dir: Path) -> Admin:
    admin = Admin.parse((data_dir / "envoy" / "admin-address").read_text())
    assert admin is not None
    return admin


async def host_on(admin: Admin, port: int) -> Host:
    """What Envoy knows of the replica on `port`."""
    [host] = [host for host in await admin.hosts(CLUSTER) if host.port == port]
    return host


async def until_host(admin: Admin, port: int, *, healthy: bool, within: float) -> None:
    async def reached() -> bool:
        return (await host_on(admin, port)).healthy == healthy

    await eventually(reached, timeout=within)


async def no_call_reaches(admin: Admin, dead_port: int, person: Person) -> None:
    """Calls made while the other replicas pass their checks never reach the dead one.

    A call sent to it would fail to connect and be retried elsewhere. While
    fewer than half of the replicas pass (a loaded machine can make a live one
    miss two checks), Envoy spreads calls over all of them, the dead one
    included (its panic threshold): such rounds do not count, and are tried again.
    """
    for _ in range(PANIC_ROUNDS):

        async def others_healthy() -> bool:
            hosts = await admin.hosts(CLUSTER)
            return all(host.healthy for host in hosts if host.port != dead_port)

        await eventually(others_healthy, timeout=RECOVERY_WAIT)
        retries, panics = await admin.counter(RETRIES), await admin.counter(PANICS)
        for _ in range(2 * REPLICAS):
            await person.api.users.GetMe(users_pb2.GetMeRequest())
        if await admin.counter(PANICS) == panics:
            assert await admin.counter(RETRIES) == retries, "a call went to the dead replica"
            return
    raise AssertionError(f"Envoy was in panic in each of {PANIC_ROUNDS} rounds")


@contextlib.asynccontextmanager
async def replicas_behind_envoy(
    url: str, data_dir: Path
) -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    async with (
        serve_atomchat(
            "--replicas",
            str(REPLICAS),
            "--data-dir",
            str(data_dir),
            database_url=url,
            envoy=True,
            ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
            ATOMCHAT_DATABASE_TIMEOUT=str(FAULT_TIMEOUT),
            ATOMCHAT_REPLICA_RESTART_SECONDS=str(RESTART_SECONDS),
        ) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.http_port}") as channel,
    ):
        yield server, channel


async def test_a_killed_replica_is_taken_over_and_nothing_is_lost(tmp_path: Path) -> None:
    async with (
        own_database() as (_, url),
        replicas_behind_envoy(url, tmp_path) as (server, channel),
    ):
        admin = envoy_admin(tmp_path)
        replicas = server.replicas()
        assert len(replicas) == REPLICAS
        assert {host.port for host in await admin.hosts(CLUSTER)} == {
            replica["grpc"] for replica in replicas
        }
        people = People(channel, url)
        senders_people = [await people.user() for _ in range(SENDERS)]
        readers_people = [await people.user() for _ in range(READERS)]
        room = await people.channel(
            senders_people[0], members=(*senders_people[1:], *readers_people)
        )

        stop = asyncio.Event()
        readers = [Reader(person, room.id) for person in readers_people]
        senders = [
            Sender(person, room.id, f"s{index}", stop)
            for index, person in enumerate(senders_people)
        ]
        # Opened one after another, round robin spreads them over every replica.
        reading = [asyncio.create_task(reader.run()) for reader in readers]
        for reader in readers:
            await reader.until_joined()
        sending = [asyncio.create_task(sender.run()) for sender in senders]
        try:
            for reader in readers:
                await reader.until(BEFORE_KILL)

            # The replica holding the most streams (round robin spreads them).
            hosts = {host.port: host for host in await admin.hosts(CLUSTER)}
            index, victim = max(
                enumerate(replicas), key=lambda replica: hosts[replica[1]["grpc"]].active
            )
            others_held = sum(h.active for port, h in hosts.items() if port != victim["grpc"])
            psutil.Process(victim["pid"]).send_signal(signal.SIGKILL)
            # Out of the rotation within the health-check interval: no call reaches it.
            out_of_rotation = asyncio.create_task(
                until_host(admin, victim["grpc"], healthy=False, within=OUT_OF_ROTATION_WITHIN)
            )
            last_before = max(seq for sender in senders for seq in sender.acked.values())
            for reader in readers:
                await reader.until(last_before + AFTER_KILL)
            await out_of_rotation
            await no_call_reaches(admin, victim["grpc"], readers_people[0])

            stop.set()
            async with asyncio.timeout(RECOVERY_WAIT):
                await asyncio.gather(*sending)
            total = sum(len(sender.acked) for sender in senders)
            for reader in readers:
                await reader.until(total)

            # Started again on the same port, and back in the rotation.
            async def restarted() -> bool:
                return server.replicas()[index]["pid"] != victim["pid"]

            await eventually(restarted, timeout=RESTART_SECONDS + RECOVERY_WAIT)
            assert server.replicas()[index]["grpc"] == victim["grpc"]
            await until_host(admin, victim["grpc"], healthy=True, within=RECOVERY_WAIT)
        finally:
            for task in (*reading, *sending):
                task.cancel()
            await asyncio.gather(*reading, *sending, return_exceptions=True)

        stored = await stored_keys(url, room.id)

    clients: list[Reader | Sender] = [*readers, *senders]
    ended = [client for client in clients if client.endings]
    assert ended, "the killed replica's streams ended"
    if others_held:
        assert len(ended) < len(clients), "the other replicas' streams went on"
    for reader in readers:
        assert reader.seqs == list(range(1, total + 1)), "no gap, no repeat across the resume"
    sent = sorted(key for sender in senders for key in sender.sent)
    assert sorted(key for _, key in stored) == sent, "every message stored, once"
    assert [seq for seq, _ in stored] == list(range(1, total + 1))
    by_key = {key: seq for seq, key in stored}
    assert all(by_key[key] == seq for sender in senders for key, seq in sender.acked.items()), (
        "each ack named the seq its message was stored with"
    )


async def test_replicas_share_the_embedded_database_and_the_signing_key(tmp_path: Path) -> None:
    async with serve_atomchat(
        "--replicas", "2", database_url=None, ATOMCHAT_DATA_DIR=str(tmp_path)
    ) as server:
        first, second = server.replicas()
        assert server.grpc_port == first["grpc"]
        for replica in (first, second):
            assert f"127.0.0.1:{replica['grpc']}  (replica" in server.output()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first['grpc']}") as channel:
            login = await Api(channel).users.Login(
                users_pb2.LoginRequest(username="moderator", password="1234")
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second['grpc']}") as channel:
            me = await Api(channel, login.access_token).users.GetMe(users_pb2.GetMeRequest())
        assert me.username == "moderator", "a token of one replica is good on another"

        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        assert not server.port_file.exists()
        assert not any(psutil.pid_exists(replica["pid"]) for replica in (first, second))


async def test_no_replica_outlives_a_killed_parent(database_url: str, tmp_path: Path) -> None:
    async with serve_atomchat(
        "--replicas",
        "2",
        database_url=database_url,
        envoy=True,
        ATOMCHAT_DATA_DIR=str(tmp_path),
        ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
    ) as server:
        children = await asyncio.to_thread(psutil.Process(server.pid).children, True)
        pids = {child.pid for child in children}
        assert {replica["pid"] for replica in server.replicas()} <= pids
        assert any(child.name() == "envoy" for child in children)
        server.process.kill()
        await server.process.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, 30)
        left = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], [p.cmdline() for p in left]


async def test_replicas_run_this_installations_code_wherever_they_are_started(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started from inside another checkout, the replicas still run the server's own
    code: `python -m` would import that checkout's package from the working directory."""
    other = tmp_path / "atomchat_server"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "__main__.py").write_text("raise SystemExit('another checkout')\n")
    monkeypatch.chdir(tmp_path)
    async with serve_atomchat(
        "--replicas",
        "2",
        database_url=database_url,
        ATOMCHAT_DATA_DIR=str(tmp_path / "data"),
        ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
    ) as server:
        for replica in server.replicas():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{replica['grpc']}") as channel:
                login = await Api(channel).users.Login(
                    users_pb2.LoginRequest(username="moderator", password="1234")
                )
            assert login.access_token


def test_replicas_are_configured_by_flag_or_environment() -> None:
    assert Settings.from_environment({}).replicas == 1
    assert Settings.from_environment({"ATOMCHAT_REPLICAS": "3"}).replicas == 3
    assert Settings.from_environment({"ATOMCHAT_REPLICAS": "3"}, replicas=2).replicas == 2
    with pytest.raises(ConfigError, match="ATOMCHAT_REPLICAS must be at least 1"):
        Settings.from_environment({"ATOMCHAT_REPLICAS": "0"})
    with pytest.raises(ConfigError, match="no room for 3 replicas"):
        Settings.from_environment({"ATOMCHAT_GRPC_PORT": "65534", "ATOMCHAT_REPLICAS": "3"})


@pytest.mark.parametrize(("base", "ports"), [(50051, [50051, 50052, 50053]), (0, [0, 0, 0])])
def test_each_replica_listens_on_the_port_after_the_last(base: int, ports: list[int]) -> None:
    assert [replica_port(base, index) for index in range(3)] == ports
    assert replica_port(None, 1) is None
