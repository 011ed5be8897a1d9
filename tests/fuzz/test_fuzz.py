"""Property-based fuzzing of every RPC: random and boundary field values, random
bytes on the wire, random frames on the streams, random JSON through Envoy.

Whatever comes in, the answer is never INTERNAL or UNKNOWN (nor a 5xx through
Envoy), the server stays healthy, and nothing is stored that the rules forbid.
The fuzz server has a database of its own (moderators block and delete at
random here). Examples per test: ATOMCHAT_FUZZ_EXAMPLES (default 25, for CI);
a longer run: `ATOMCHAT_FUZZ_EXAMPLES=2000 ./scripts/test tests/fuzz`. Counts
and status codes seen go to test-artifacts/fuzz-summary.json.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from atomchat.v1 import (
    channels_pb2,
    chat_pb2,
    inbox_pb2,
    join_requests_pb2,
    members_pb2,
    users_pb2,
)
from google.api import annotations_pb2
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomchat_server.app import App
from atomchat_server.db.engine import Database
from atomchat_server.domain import text
from atomchat_server.domain.usernames import username_key, validate_username
from atomchat_server.seeding import seed
from devsupport import fresh_database
from tests.conftest import TEST_SETTINGS
from tests.edge.edge_support import running_envoy
from tests.fuzz.strategies import json_bodies, messages
from tests.raw_http2 import RawCall
from tests.support import People, Person, health_stub, sql

EXAMPLES = int(os.environ.get("ATOMCHAT_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=os.environ.get("CI") == "true",
)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
CALL_SECONDS = 10.0
SUMMARY = Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz-summary.json"
SERVICES = [
    descriptor_.services_by_name[name]
    for descriptor_, name in (
        (users_pb2.DESCRIPTOR, "UserService"),
        (channels_pb2.DESCRIPTOR, "ChannelService"),
        (join_requests_pb2.DESCRIPTOR, "JoinRequestService"),
        (members_pb2.DESCRIPTOR, "MemberService"),
        (chat_pb2.DESCRIPTOR, "ChatService"),
        (inbox_pb2.DESCRIPTOR, "InboxService"),
    )
]
METHODS = [method for service in SERVICES for method in service.methods]
UNARY = [m for m in METHODS if not m.client_streaming and not m.server_streaming]
SERVER_STREAMS = [m for m in METHODS if m.server_streaming and not m.client_streaming]
ROUTES = [
    m
    for m in METHODS
    if m.GetOptions().HasExtension(annotations_pb2.http)  # type: ignore[arg-type]
]

seen: Counter[str] = Counter()


def path_of(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class FuzzServer:
    app: App
    channel: grpc.aio.Channel
    database_url: str
    actors: list[Person]
    http: httpx.AsyncClient


@pytest.fixture(scope="module")
async def fuzz(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzServer]:
    async with fresh_database(postgres_server_url) as url:
        database = Database(url)
        await seed(database)
        await database.dispose()
        app = App(TEST_SETTINGS, url)
        await app.start()
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
                running_envoy(grpc_port=app.port, work_dir=tmp_path_factory.mktemp("fuzz")) as edge,
                httpx.AsyncClient(base_url=edge.url, timeout=CALL_SECONDS) as http,
            ):
                people = People(channel, url)
                owner, moderator = await people.user("fuzzer"), await people.moderator()
                for _ in range(3):
                    await people.channel(owner, members=(moderator,))
                seeded = await people.login("programmer_creator", "1234")
                yield FuzzServer(app, channel, url, [owner, moderator, seeded], http)
        finally:
            await app.stop()


@pytest.fixture(autouse=True)
async def fresh_actors(fuzz: FuzzServer) -> None:
    """Each test starts with its actors active and freshly logged in: an earlier
    test's moderator may have blocked one (and blocking outlives the unblock for
    tokens issued before it)."""
    ids = [actor.id for actor in fuzz.actors]
    await sql(fuzz.database_url, "UPDATE users SET is_active = true WHERE id = ANY($1)", ids)
    people = People(fuzz.channel, fuzz.database_url)
    for index, actor in enumerate(fuzz.actors):
        fuzz.app.authenticator.forget(actor.id)
        fuzz.actors[index] = await people.login(actor.username, actor.password)


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(dict(sorted(seen.items())), indent=2) + "\n")


async def call_unary(
    fuzz: FuzzServer, method: descriptor.MethodDescriptor, body: bytes, actor: Person | None
) -> grpc.StatusCode:
    invoke = fuzz.channel.unary_unary(
        path_of(method), request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw
    )
    metadata = actor.api.metadata if actor is not None else ()
    try:
        await invoke(body, metadata=metadata, timeout=CALL_SECONDS)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def record(kind: str, method: descriptor.MethodDescriptor, outcome: object) -> None:
    seen[f"{kind} {method.containing_service.name}.{method.name} -> {outcome}"] += 1
    seen[f"{kind} inputs"] += 1


ACTOR_INDEX = st.sampled_from([0, 1, 2, None])


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
@FUZZ
@given(data=st.data(), who=ACTOR_INDEX)
async def test_no_unary_request_fails_internally(
    fuzz: FuzzServer, method: descriptor.MethodDescriptor, data: st.DataObject, who: int | None
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    actor = fuzz.actors[who] if who is not None else None
    code = await call_unary(fuzz, method, request.SerializeToString(), actor)
    record("message", method, code.name)
    assert code not in NEVER


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
@FUZZ
@given(body=st.binary(max_size=256))
async def test_no_bytes_on_the_wire_fail_internally(
    fuzz: FuzzServer, method: descriptor.MethodDescriptor, body: bytes
) -> None:
    code = await call_unary(fuzz, method, body, fuzz.actors[0])
    record("bytes", method, code.name)
    assert code not in NEVER


async def read_stream(call: Any) -> grpc.StatusCode:
    """Read a few frames (or the end); a stream that is still open is fine."""
    try:
        async with asyncio.timeout(2.0):
            for _ in range(20):
                if await call.read() is grpc.aio.EOF:
                    return grpc.StatusCode.OK
    except TimeoutError:
        call.cancel()
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        return error.code()
    call.cancel()
    return grpc.StatusCode.OK


CHAT_STREAM = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].methods_by_name["ChatStream"]


JOIN_FRAMES = st.builds(
    lambda channel_id, after, limit, batch: chat_pb2.ChatStreamRequest(
        join=chat_pb2.ChatJoin(
            channel_id=channel_id, after_seq=after, history_limit=limit, max_batch=batch
        )
    ),
    st.integers(-1, 8),
    st.one_of(st.none(), st.integers(-1, 5)),
    st.one_of(st.none(), st.integers(0, 1001)),
    st.integers(0, 2000),
)
STREAM_FRAMES = messages(CHAT_STREAM.input_type)


@FUZZ
@given(
    first=st.one_of(JOIN_FRAMES, STREAM_FRAMES),
    rest=st.lists(st.one_of(STREAM_FRAMES, st.binary(max_size=64)), max_size=5),
    who=st.sampled_from([0, 1, 2]),
)
async def test_no_chat_stream_frames_fail_internally(
    fuzz: FuzzServer, first: Any, rest: list[Any], who: int
) -> None:
    """Spoken over raw HTTP/2, so that the status read is the server's own (a gRPC
    client library reports its own INTERNAL when a write fails after the end)."""
    call = await RawCall.open(
        fuzz.app.port, path_of(CHAT_STREAM), fuzz.actors[who].api.metadata, window=1 << 20
    )
    try:
        for item in [first, *rest]:
            await call.send(item if isinstance(item, bytes) else item.SerializeToString())
        try:
            async with asyncio.timeout(2.0):
                await call.until_ended(grant=True)
        except TimeoutError:
            pass  # still open: a stream waiting for more is no failure
    finally:
        await call.close()
    status = call.trailers.get("grpc-status")
    code = grpc.StatusCode.OK if status is None else _CODES[int(status)]
    record("stream", CHAT_STREAM, code.name)
    assert code not in NEVER, call.trailers


@pytest.mark.parametrize("method", SERVER_STREAMS, ids=lambda m: m.name)
@FUZZ
@given(data=st.data(), who=st.sampled_from([0, 1, 2]))
async def test_no_server_stream_request_fails_internally(
    fuzz: FuzzServer, method: descriptor.MethodDescriptor, data: st.DataObject, who: int
) -> None:
    """Subscribe and StreamInbox."""
    request = data.draw(messages(method.input_type), label="request")
    invoke = fuzz.channel.unary_stream(
        path_of(method),
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    call = invoke(request.SerializeToString(), metadata=fuzz.actors[who].api.metadata)
    code = await read_stream(call)
    record("stream", method, code.name)
    assert code not in NEVER


def route_of(method: descriptor.MethodDescriptor) -> tuple[str, str, str]:
    rule: Any = method.GetOptions().Extensions[annotations_pb2.http]  # type: ignore[index]
    verb = rule.WhichOneof("pattern") or "get"
    return verb.upper(), getattr(rule, verb), rule.body


PATH_VALUES = st.one_of(
    st.integers(-5, 60).map(str),
    st.sampled_from(["0", "-1", "9223372036854775808", "abc", "%00", "%2e%2e", "1.5", ""]),
)


QUERY = st.dictionaries(
    st.sampled_from(
        [
            "page_size",
            "page_token",
            "slug",
            "status",
            "after_seq",
            "history_limit",
            "query",
            "channel_id",
            "nonsense",
        ]
    ),
    PATH_VALUES,
    max_size=3,
)


def fill(template: str, values: list[str]) -> str:
    path = template
    for value in values:
        start = path.find("{")
        if start < 0:
            break
        path = path[:start] + value + path[path.index("}", start) + 1 :]
    return path


@pytest.mark.parametrize("method", ROUTES, ids=lambda m: m.name)
@FUZZ
@given(
    data=st.data(),
    values=st.lists(PATH_VALUES, min_size=3, max_size=3),
    query=QUERY,
    who=st.sampled_from([0, 1, 2, None]),
)
async def test_no_json_request_is_a_server_error(  # noqa: PLR0917 - given draws positionally
    fuzz: FuzzServer,
    method: descriptor.MethodDescriptor,
    data: st.DataObject,
    values: list[str],
    query: dict[str, str],
    who: int | None,
) -> None:
    verb, template, body_field = route_of(method)
    body = data.draw(json_bodies(method.input_type), label="body") if body_field else None
    headers = {"authorization": f"Bearer {fuzz.actors[who].token}"} if who is not None else {}
    request = fuzz.http.build_request(
        verb, fill(template, values), params=query, headers=headers, json=body
    )
    response = await fuzz.http.send(request, stream=True)
    await response.aclose()
    record("json", method, response.status_code)
    assert response.status_code < 500, (request.url, body)


async def test_afterwards_the_server_is_healthy_and_the_store_keeps_every_rule(
    fuzz: FuzzServer,
) -> None:
    health = await health_stub(fuzz.channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    url = fuzz.database_url
    # A tombstone, whatever the fuzzing left: a deleted message keeps no content.
    people = People(fuzz.channel, url)
    author = await people.user("tombstone")
    channel = await people.channel(author)
    posted = await author.api.chat.SendMessage(
        chat_pb2.SendMessageRequest(channel_id=channel.id, content="gone soon")
    )
    await author.api.chat.DeleteMessage(
        chat_pb2.DeleteMessageRequest(channel_id=channel.id, message_id=posted.id)
    )
    miscounted = await sql(
        url,
        "SELECT c.id FROM channels c LEFT JOIN channel_members m ON m.channel_id = c.id"
        " GROUP BY c.id HAVING c.member_count <> count(m.id)",
    )
    assert miscounted == []
    ownerless = await sql(
        url,
        "SELECT c.id FROM channels c LEFT JOIN channel_members m"
        " ON m.channel_id = c.id AND m.is_owner GROUP BY c.id HAVING count(m.id) <> 1",
    )
    assert ownerless == []
    gaps = await sql(
        url,
        # Messages and their changes (edits, deletions, reactions) share one seq order.
        "SELECT c.id FROM channels c LEFT JOIN ("
        " SELECT channel_id, seq FROM messages"
        " UNION ALL SELECT channel_id, seq FROM message_updates"
        ") s ON s.channel_id = c.id"
        " GROUP BY c.id HAVING count(s.seq) <> c.last_seq OR coalesce(max(s.seq), 0) <> c.last_seq",
    )
    assert gaps == []
    for row in await sql(url, "SELECT content, deleted_at FROM messages"):
        if row["deleted_at"] is not None:
            assert row["content"] == ""
            continue
        assert 1 <= len(row["content"]) <= 4000
        assert text.has_visible(row["content"]), row["content"]
    for row in await sql(url, "SELECT username, username_key FROM users"):
        validate_username(row["username"])
        assert row["username_key"] == username_key(row["username"])
    for row in await sql(url, "SELECT name FROM channels"):
        assert 1 <= len(row["name"]) <= 100
        assert not text.has_control_or_format(row["name"]), row["name"]
    seen["store checks"] += 1
