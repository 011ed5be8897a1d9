"""Quiet streams through Envoy: the server's heartbeats keep them under the
connection manager's stream idle timeout; without heartbeats Envoy cuts them.

Envoy is rendered with a 2 s idle timeout, in front of servers (on the session's
database) that beat every 0.5 s, or never. The tests hold streams for three
idle timeouts; none of them measures how long anything took: Envoy's own
counter of idle timeouts says whether it cut a stream for being quiet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from atomchat.v1 import chat_pb2

from atomchat_server.app import App
from tests.conftest import with_settings
from tests.edge.edge_support import RunningEnvoy, authority, bearer, running_envoy, sse_events
from tests.support import Api, People

IDLE_TIMEOUT = 2.0
HELD_FOR = 3 * IDLE_TIMEOUT
IDLE_CUTS = "http.atomchat.downstream_rq_idle_timeout"


@contextlib.asynccontextmanager
async def app_behind_envoy(
    database_url: str, work_dir: Path, *, heartbeat_seconds: float
) -> AsyncIterator[RunningEnvoy]:
    app = App(with_settings(heartbeat_seconds=heartbeat_seconds), database_url)
    await app.start()
    try:
        async with running_envoy(
            grpc_port=app.port, work_dir=work_dir, stream_idle_timeout=IDLE_TIMEOUT
        ) as envoy:
            yield envoy
    finally:
        await app.stop()


@pytest.fixture(scope="module")
async def beating(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningEnvoy]:
    async with app_behind_envoy(
        database_url, tmp_path_factory.mktemp("beating"), heartbeat_seconds=0.5
    ) as envoy:
        yield envoy


@pytest.fixture(scope="module")
async def silent(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningEnvoy]:
    async with app_behind_envoy(
        database_url, tmp_path_factory.mktemp("silent"), heartbeat_seconds=3600
    ) as envoy:
        yield envoy


async def test_a_quiet_grpc_stream_outlives_the_idle_timeout(
    beating: RunningEnvoy, people: People
) -> None:
    owner = await people.user("quiet")
    channel = await people.channel(owner)
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(authority(beating.url)) as through_envoy:
        call = Api(through_envoy, owner.token).chat.Subscribe(
            chat_pb2.SubscribeRequest(channel_id=channel.id, history_limit=0)
        )
        async with asyncio.timeout(10):
            assert (await call.read()).HasField("joined")
        opened = loop.time()
        beats = 0
        async with asyncio.timeout(HELD_FOR + 30):
            while loop.time() - opened < HELD_FOR:
                event = await call.read()
                assert event.HasField("heartbeat"), event
                beats += 1
        assert beats >= 2

        sent = await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="still here")
        )
        async with asyncio.timeout(10):
            event = await call.read()
            while event.HasField("heartbeat"):
                event = await call.read()
        assert (event.message.seq, event.message.content) == (sent.seq, "still here")
        call.cancel()
    assert beating.envoy.admin is not None
    assert await beating.envoy.admin.counter(IDLE_CUTS) == 0


async def test_a_quiet_event_stream_outlives_the_idle_timeout(
    beating: RunningEnvoy, people: People
) -> None:
    owner = await people.user("quiet_sse")
    channel = await people.channel(owner)
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=beating.url, timeout=httpx.Timeout(10.0, read=None)) as http,
        http.stream(
            "GET",
            f"/v1/channels/{channel.id}/events",
            params={"history_limit": 0},
            headers=bearer(owner.token),
        ) as response,
        contextlib.aclosing(sse_events(response)) as events,
    ):
        assert response.status_code == 200
        async with asyncio.timeout(10):
            assert "joined" in await anext(events)
        opened = loop.time()
        async with asyncio.timeout(HELD_FOR + 30):
            while loop.time() - opened < HELD_FOR:
                assert "heartbeat" in await anext(events)

        sent = await owner.api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel.id, content="still here")
        )
        async with asyncio.timeout(10):
            event = await anext(events)
            while "heartbeat" in event:
                event = await anext(events)
        assert event["message"]["seq"] == str(sent.seq)


async def test_without_heartbeats_envoy_cuts_a_quiet_stream(
    silent: RunningEnvoy, people: People
) -> None:
    owner = await people.user("silent")
    channel = await people.channel(owner)
    assert silent.envoy.admin is not None
    cuts_before = await silent.envoy.admin.counter(IDLE_CUTS)
    async with grpc.aio.insecure_channel(authority(silent.url)) as through_envoy:
        call = Api(through_envoy, owner.token).chat.Subscribe(
            chat_pb2.SubscribeRequest(channel_id=channel.id, history_limit=0)
        )
        async with asyncio.timeout(10):
            assert (await call.read()).HasField("joined")
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async with asyncio.timeout(HELD_FOR + 30):
                await call.read()
    # Envoy resets the stream; gRPC reports a reset stream as INTERNAL.
    assert cut.value.code() is grpc.StatusCode.INTERNAL, cut.value
    assert "RST_STREAM" in (cut.value.details() or "")
    assert await silent.envoy.admin.counter(IDLE_CUTS) == cuts_before + 1
