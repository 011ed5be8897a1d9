"""Envoy's route timeouts against a server that answers nothing (SIGSTOPped).

A unary call, over gRPC or JSON, ends at Envoy's bound, a little above the
server's ATOMCHAT_DATABASE_TIMEOUT: UNAVAILABLE for gRPC clients (which
retry it), 504 with the JSON error body for HTTP clients. A stream opened
before the pause is not cut by it, and delivers again once the server runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import grpc
import httpx
from atomchat.v1 import users_pb2

from atomchat_server.edge.config import unary_timeout
from devsupport import serve_atomchat
from tests.chat_support import post, subscription
from tests.conftest import TEST_SETTINGS
from tests.support import People

# Short, for a short test; not so short that a loaded machine's database misses it
# while the test registers its user (each wait gets a share of it).
DATABASE_TIMEOUT = 3.0
ROUTE_TIMEOUT = unary_timeout(DATABASE_TIMEOUT)
# Beyond the bound, for a loaded machine; a call that hangs fails the test here.
SLACK = 10.0
# Envoy's words when its route timeout fires (and nothing else answered).
TIMED_OUT = "upstream request timeout"
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_unary_calls_end_at_envoys_bound_while_streams_outlive_it(
    database_url: str,
) -> None:
    async with (
        serve_atomchat(
            database_url=database_url,
            envoy=True,
            ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
            ATOMCHAT_DATABASE_TIMEOUT=str(DATABASE_TIMEOUT),
        ) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.http_port}") as channel,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http,
    ):
        people = People(channel, database_url)
        owner = await people.user()
        room = await people.channel(owner)
        async with subscription(owner, room.id, history_limit=0) as feed:
            with paused(server.pid):
                started = time.monotonic()
                try:
                    await owner.api.users.GetMe(
                        users_pb2.GetMeRequest(), timeout=ROUTE_TIMEOUT + SLACK
                    )
                except grpc.aio.AioRpcError as error:
                    code, details = error.code(), error.details() or ""
                waited = time.monotonic() - started
                assert code == grpc.StatusCode.UNAVAILABLE
                assert TIMED_OUT in details
                assert waited < ROUTE_TIMEOUT + SLACK

                started = time.monotonic()
                response = await http.get(
                    "/v1/users/me",
                    headers={"authorization": f"Bearer {owner.token}"},
                    timeout=ROUTE_TIMEOUT + SLACK,
                )
                waited = time.monotonic() - started
                assert response.status_code == 504
                body = response.json()
                assert (body["code"], body["message"]) == (DEADLINE_EXCEEDED, TIMED_OUT)
                assert waited < ROUTE_TIMEOUT + SLACK
            assert not feed.finished, "the stream outlived the unary bound"
            sent = await post(owner, room.id, "after the pause")
            [received] = await feed.until_messages(1)
            assert received.id == sent.id
