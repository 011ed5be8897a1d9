"""Streams opened in a burst: let in a few at a time, in order; beyond what may wait,
refused UNAVAILABLE "Server is busy, try again" with RetryInfo (api/admission.py);
never dropped by gRPC as CANCELLED."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from atomchat.v1 import chat_pb2, chat_pb2_grpc

from atomchat_server.api.admission import Admission, AdmissionInterceptor, _Replayed
from atomchat_server.api.status import ErrorInterceptor
from atomchat_server.app import App
from atomchat_server.auth.tokens import Tokens
from atomchat_server.domain import errors
from atomchat_server.domain.entities import UserView
from atomchat_server.interception import Context
from tests.conftest import TEST_SETTINGS
from tests.faults.fault_support import retry_delay
from tests.support import People, eventually, sql, unique


async def test_holders_are_let_in_a_few_at_a_time_in_order_of_arrival() -> None:
    admission = Admission(opening=2, waiting=10, wait_seconds=60)
    await admission.enter()
    await admission.enter()
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        await admission.enter()
        order.append(n)

    waiting = [asyncio.create_task(wait_turn(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert admission.waiting == 3
    assert order == []
    admission.leave()
    await waiting[0]
    admission.leave()
    admission.leave()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]
    assert admission.waiting == 0


async def test_beyond_those_that_may_wait_a_caller_is_refused_at_once() -> None:
    admission = Admission(opening=1, waiting=1, wait_seconds=60)
    await admission.enter()
    first_in_line = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    with pytest.raises(errors.Unavailable) as raised:
        await admission.enter()
    assert raised.value.reason == errors.Reason.SERVER_BUSY
    assert admission.refused == 1
    admission.leave()
    await first_in_line


async def test_a_caller_that_waited_too_long_is_refused_and_takes_no_turn() -> None:
    admission = Admission(opening=1, waiting=10, wait_seconds=0.01)
    await admission.enter()
    with pytest.raises(errors.Unavailable):
        await admission.enter()
    gave_up = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)
    gave_up.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gave_up
    admission.leave()
    # Neither the refused caller nor the one that gave up holds the turn.
    await asyncio.wait_for(admission.enter(), timeout=10)


# A stream handler that opens when the test says so: each call announces
# itself, then waits for its own go-ahead before writing its first frame.
METHOD = "/atomchat.v1.ChatService/ChatStream"


class Gate:
    def __init__(self) -> None:
        self.arrived: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def stream(self, requests: AsyncIterator[bytes], context: Context) -> None:
        go = asyncio.Event()
        await self.arrived.put(go)
        await go.wait()
        await context.write(b"opened")
        async for _ in requests:
            pass


async def _numbers(*values: int) -> AsyncIterator[int]:
    for value in values:
        yield value


async def test_the_first_request_read_is_put_back_in_front_of_the_rest() -> None:
    assert [request async for request in _Replayed(1, _numbers(2, 3))] == [1, 2, 3]
    assert [request async for request in _Replayed(1, _numbers())] == [1]


async def test_once_the_first_is_taken_the_rest_is_read_with_no_layer_between() -> None:
    rest = _numbers(2, 3)
    requests = _Replayed(1, rest)
    assert await anext(requests) == 1
    assert aiter(requests) is rest
    assert [request async for request in requests] == [2, 3]


@contextlib.asynccontextmanager
async def gated_server(admission: Admission, gate: Gate) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor(), AdmissionInterceptor(admission)])
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
        gate.stream
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("atomchat.v1.ChatService", {"ChatStream": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


async def test_a_stream_holds_its_turn_until_its_first_frame_the_rest_are_refused_busy() -> None:
    gate = Gate()
    admission = Admission(opening=1, waiting=1, wait_seconds=60)
    async with gated_server(admission, gate) as channel:
        method: Any = channel.stream_stream(METHOD)
        # A stream that never sends its first request waits for no turn.
        silent = method()
        first = method()
        await first.write(b"join")
        let_first_open = await gate.arrived.get()
        second = method()
        await second.write(b"join")

        async def second_waits() -> bool:
            return admission.waiting == 1

        await eventually(second_waits)
        third = method()
        await third.write(b"join")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await third.read()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert raised.value.details() == "Server is busy, try again"
        assert retry_delay(raised.value) == 1.0
        assert gate.arrived.empty()

        let_first_open.set()
        assert await first.read() == b"opened"
        let_second_open = await gate.arrived.get()
        let_second_open.set()
        assert await second.read() == b"opened"
        for call in (first, second, silent):
            call.cancel()


BURST = 1200
STREAMS_PER_CONNECTION = 50


async def members(database_url: str, channel_id: int, count: int) -> list[str]:
    """`count` new members of the channel, made directly in the database; their tokens."""
    rows = await sql(
        database_url,
        "INSERT INTO users (username, username_key, hashed_password)"
        " SELECT $1 || '_' || i, lower($1 || '_' || i), '!' FROM generate_series(1, $2) AS i"
        " RETURNING id, username, role, is_active, created_at",
        unique("burst"),
        count,
    )
    await sql(
        database_url,
        "INSERT INTO channel_members (channel_id, user_id, is_owner)"
        " SELECT $1, id, false FROM unnest($2::bigint[]) AS id",
        channel_id,
        [row["id"] for row in rows],
    )
    await sql(
        database_url,
        "UPDATE channels SET member_count = member_count + $2 WHERE id = $1",
        channel_id,
        count,
    )
    tokens = Tokens(secret=TEST_SETTINGS.jwt_secret, lifetime=timedelta(minutes=10))
    return [tokens.issue(UserView(**row)).token for row in rows]


async def opened_or_refused(call: Any, channel_id: int) -> str:
    """How a ChatStream was answered: "joined", or its status (and whether it had RetryInfo)."""
    join = chat_pb2.ChatStreamRequest(
        join=chat_pb2.ChatJoin(channel_id=channel_id, history_limit=0)
    )
    try:
        await call.write(join)
        first = await call.read()
    except grpc.aio.AioRpcError as error:
        with_retry_info = "+RetryInfo" if retry_delay(error) is not None else ""
        return f"{error.code().name}{with_retry_info}"
    return "joined" if first.HasField("joined") else f"first frame {first.WhichOneof('frame')}"


async def test_a_burst_of_streams_is_let_in_or_refused_busy_and_never_cancelled(
    app: App, people: People, database_url: str
) -> None:
    owner = await people.user()
    room = await people.channel(owner)
    tokens = await members(database_url, room.id, BURST)
    connections = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{app.port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(math.ceil(BURST / STREAMS_PER_CONNECTION))
    ]
    calls = [
        chat_pb2_grpc.ChatServiceStub(connections[n // STREAMS_PER_CONNECTION]).ChatStream(
            metadata=(("authorization", f"Bearer {token}"),)
        )
        for n, token in enumerate(tokens)
    ]
    try:
        outcomes = Counter(await asyncio.gather(*(opened_or_refused(c, room.id) for c in calls)))
    finally:
        for call in calls:
            call.cancel()
        for connection in connections:
            await connection.close()
    assert set(outcomes) <= {"joined", "UNAVAILABLE+RetryInfo"}, outcomes
    assert outcomes["joined"] > 0
