"""SPEC §11 and issue 9.9: Prometheus metrics during a real chat, JSON log lines
with each call's context, reflection v1 beside v1alpha."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from atomchat.v1 import users_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client.parser import text_string_to_metric_families

from atomchat_server.api.status import ErrorInterceptor
from atomchat_server.app import App
from atomchat_server.observability.calls import CallObserver
from atomchat_server.observability.logs import CallContext, JsonFormatter
from devsupport import serve_atomchat
from tests.chat_support import chat
from tests.conftest import TEST_SETTINGS, Dial
from tests.support import People, Person

SPEC_METRICS = (
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "atomchat_streams_open",
    "atomchat_messages_posted_total",
    "atomchat_post_batch_size",
    "atomchat_commit_seconds",
    "atomchat_fanout_delay_seconds",
    "atomchat_slow_readers_ended_total",
    "atomchat_bus_reconnects_total",
    "atomchat_logins_total",
    "atomchat_rate_limited_total",
)
CALL_FIELDS = ("method", "user_id", "peer", "call_id", "duration_seconds", "grpc_code")


class Scrape:
    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]

    def has(self, name: str) -> bool:
        """A metric of SPEC §11 by its exposed name (counters are parsed without _total)."""
        return name in self.families or name.removesuffix("_total") in self.families

    def value(self, name: str, **labels: str) -> float:
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert found, f"no sample {name}{labels}"
        return float(sum(found))


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


@pytest.fixture
async def observed(database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with serve_atomchat(
        "--metrics-port",
        "0",
        "--log-format",
        "json",
        database_url=database_url,
        ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
        log_path=tmp_path / "server.log",
    ) as server:
        yield server


async def test_metrics_scraped_during_a_chat_parse_and_count_it(
    observed: Any, people: People, dial: Dial
) -> None:
    metrics_port = observed.ports["metrics"]
    owner, reader = await people.user("metrics_owner"), await people.user("metrics_reader")
    channel = await people.channel(owner, members=(reader,))
    owner, reader = await dial(observed.grpc_port, owner), await dial(observed.grpc_port, reader)
    with pytest.raises(grpc.aio.AioRpcError):
        await dial(observed.grpc_port, Person(0, owner.username, "wrong-password", "", owner.api))

    async with chat(reader, channel.id) as listening, chat(owner, channel.id) as talking:
        for n in range(3):
            await talking.send(f"metrics {n}", f"m{n}")
        for n in range(3):
            await talking.ack(f"m{n}")
        await listening.feed.until_messages(3)
        during = await scrape(metrics_port)

    for name in SPEC_METRICS:
        assert during.has(name), name
    assert during.value("atomchat_streams_open") >= 2
    assert during.value("atomchat_messages_posted_total") >= 3
    assert during.value("atomchat_post_batch_size_count") >= 1
    assert during.value("atomchat_commit_seconds_count") >= 1
    assert during.value("atomchat_fanout_delay_seconds_count") >= 1
    # Every posted message's own delay, summed, beside the rounds' histogram.
    assert during.value("atomchat_fanout_messages_total") >= 3
    assert during.has("atomchat_fanout_message_delay_seconds_total")
    # The search indexes' merges (a merge may still be under way: only exposed).
    assert during.has("atomchat_index_merge_seconds")
    assert during.has("atomchat_index_merged_pages_total")
    assert during.value("atomchat_logins_total", outcome="success") >= 2
    assert during.value("atomchat_logins_total", outcome="failure") >= 1
    assert during.value("atomchat_rate_limited_total", limit="messages") == 0
    assert during.value("atomchat_slow_readers_ended_total") == 0
    assert during.value("atomchat_bus_reconnects_total") == 0
    login = {"grpc_service": "atomchat.v1.UserService", "grpc_method": "Login"}
    assert during.value("grpc_server_started_total", grpc_type="UNARY", **login) >= 3
    assert during.value("grpc_server_handled_total", grpc_code="OK", **login) >= 2
    assert during.value("grpc_server_handled_total", grpc_code="UNAUTHENTICATED", **login) >= 1
    assert during.value("grpc_server_handling_seconds_count", **login) >= 3
    stream = {"grpc_method": "ChatStream", "grpc_type": "BIDI_STREAM"}
    assert during.value("grpc_server_started_total", **stream) >= 2

    async def closed() -> bool:
        return (await scrape(metrics_port)).value("atomchat_streams_open") == 0

    async with asyncio.timeout(10):
        while not await closed():  # noqa: ASYNC110 - the server's state, read by scraping
            await asyncio.sleep(0.05)
    after = await scrape(metrics_port)
    assert after.value("grpc_server_handled_total", grpc_code="CANCELLED", **stream) >= 2


async def test_json_logs_give_every_call_its_method_user_peer_id_and_duration(
    observed: Any, people: People, dial: Dial
) -> None:
    person = await dial(observed.grpc_port, await people.user("json_logs"))
    await person.api.users.GetMe(users_pb2.GetMeRequest())

    lines = [line for line in observed.output().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    calls = [entry for entry in entries if entry["logger"] == "atomchat.calls"]
    get_me = [e for e in calls if e["method"] == "/atomchat.v1.UserService/GetMe"]
    assert len(get_me) == 1
    for name in CALL_FIELDS:
        assert get_me[0][name] is not None, name
    assert get_me[0]["user_id"] == person.id
    assert get_me[0]["peer"].startswith("ipv4:127.0.0.1:")
    assert get_me[0]["grpc_code"] == "OK"
    logins = [e for e in calls if e["method"] == "/atomchat.v1.UserService/Login"]
    assert logins
    assert len({e["call_id"] for e in calls}) == len(calls), "one id per call"


async def test_an_unexpected_error_line_carries_the_calls_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(request: bytes, context: Any) -> bytes:
        raise RuntimeError("a bug")

    server = grpc.aio.server(interceptors=[CallObserver(), ErrorInterceptor()])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "atomchat.v1.Broken", {"Call": grpc.unary_unary_rpc_method_handler(boom)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    caplog.set_level(logging.INFO, logger="atomchat.calls")
    records: list[logging.LogRecord] = []
    call_logged = asyncio.Event()

    def keep(record: logging.LogRecord) -> None:
        records.append(record)
        if record.name == "atomchat.calls":
            call_logged.set()

    handler = logging.Handler()
    handler.emit = keep  # type: ignore[method-assign]
    handler.addFilter(CallContext())
    logging.getLogger().addHandler(handler)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            broken: Any = channel.unary_unary("/atomchat.v1.Broken/Call")
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await broken(b"")
        # The call's own line is written once its status is out: the client
        # may hear the status first.
        async with asyncio.timeout(10):
            await call_logged.wait()
    finally:
        logging.getLogger().removeHandler(handler)
        await server.stop(None)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    unexpected = [r for r in records if r.getMessage() == "unexpected error"]
    assert len(unexpected) == 1
    entry = json.loads(JsonFormatter().format(unexpected[0]))
    assert entry["level"] == "ERROR"
    assert entry["method"] == "/atomchat.v1.Broken/Call"
    assert entry["peer"].startswith("ipv4:127.0.0.1:")
    assert entry["call_id"]
    assert "RuntimeError: a bug" in entry["exception"]
    finished = [r for r in records if r.name == "atomchat.calls"]
    assert json.loads(JsonFormatter().format(finished[0]))["call_id"] == entry["call_id"]


async def reflect_v1(app: App, request: reflection_pb2.ServerReflectionRequest) -> Any:
    """One request to grpc.reflection.v1 (its messages are v1alpha's, field for field)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        call: Any = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )()
        await call.write(request)
        await call.done_writing()
        response = await call.read()
    return cast(Any, response)


async def test_reflection_v1_lists_and_describes_the_services(app: App) -> None:
    listed = await reflect_v1(app, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {"atomchat.v1.UserService", "grpc.reflection.v1.ServerReflection"} <= names
    described = await reflect_v1(
        app,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="atomchat.v1.ChatService"),
    )
    assert any(
        b"atomchat/v1/chat.proto" in f
        for f in described.file_descriptor_response.file_descriptor_proto
    )
    itself = await reflect_v1(
        app,
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
    )
    assert any(
        b"grpc/reflection/v1/reflection.proto" in f
        for f in itself.file_descriptor_response.file_descriptor_proto
    )
