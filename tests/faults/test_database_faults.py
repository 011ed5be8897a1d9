"""PostgreSQL paused, or killed and restarted, while clients send; and a commit
whose answer is lost on the way.

What a user sees: every call made during the fault ends UNAVAILABLE "Database
unavailable, try again" with RetryInfo, within the bound; health says
NOT_SERVING, then SERVING once the database answers; every acknowledged
message is stored once, resending the others with their client_message_id
stores each once; live readers miss nothing, and a reader resuming with
after_seq finds no gap. Each test runs its own PostgreSQL (never the shared one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from atomchat.v1 import chat_pb2, users_pb2
from google.rpc import code_pb2

from atomchat_server.app import App
from devsupport.postgres import ScratchPostgres
from tests.chat_support import chat, post, seqs, subscription
from tests.conftest import Dial, with_settings
from tests.faults.fault_support import (
    ANSWER_WITHIN,
    FAULT_TIMEOUT,
    NOT_SERVING,
    RECOVERY_WAIT,
    SERVING,
    Ledger,
    own_database,
    retry_delay,
    stored_keys,
    watching_health,
)
from tests.support import People, Person, sql
from tests.tcp_proxy import proxied

DATABASE_UNAVAILABLE = "Database unavailable, try again"


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[tuple[App, grpc.aio.Channel]]:
    """A server with the fault tests' short bound, and a connection to it."""
    app = App(with_settings(database_timeout=FAULT_TIMEOUT), url)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            yield app, channel
    finally:
        await app.stop()


async def answers_unavailable(call: object) -> None:
    """The call ends UNAVAILABLE with RetryInfo before its client gives up on it."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    error = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, f"{error.code()}: {error.details()}"
    assert error.details() == DATABASE_UNAVAILABLE
    delay = retry_delay(error)
    assert delay is not None, "UNAVAILABLE without RetryInfo"
    assert delay > 0


async def unary_calls_fail_in_time(owner: Person, channel_id: int, key: str) -> None:
    """A post, a read and a profile lookup made during the fault."""
    api = owner.api
    await answers_unavailable(
        api.chat.SendMessage(
            chat_pb2.SendMessageRequest(channel_id=channel_id, content=key, client_message_id=key),
            timeout=ANSWER_WITHIN,
        )
    )
    await answers_unavailable(
        api.chat.ListMessages(
            chat_pb2.ListMessagesRequest(channel_id=channel_id), timeout=ANSWER_WITHIN
        )
    )
    await answers_unavailable(api.users.GetMe(users_pb2.GetMeRequest(), timeout=ANSWER_WITHIN))


FAULTS: dict[str, tuple[Callable[[ScratchPostgres], None], Callable[[ScratchPostgres], None]]] = {
    "paused": (ScratchPostgres.pause, ScratchPostgres.resume),
    "killed": (ScratchPostgres.kill, ScratchPostgres.restart),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_database_fault_during_sends_loses_and_duplicates_nothing(fault: str) -> None:
    begin, end = FAULTS[fault]
    async with own_database() as (postgres, url), serving(url) as (_, connection):
        people = People(connection, url)
        owner, reader = await people.user(), await people.user()
        room = await people.channel(owner, members=(reader,))
        ledger = Ledger("k")
        unary_key = "unary-during-the-fault"
        async with (
            watching_health(connection) as health,
            chat(owner, room.id, history_limit=0) as sender,
            subscription(reader, room.id, history_limit=0) as live,
        ):
            await health.until(SERVING)
            before = ledger.keys(5)
            await ledger.send(sender, before)
            await ledger.until_acked(sender, before)

            await asyncio.to_thread(begin, postgres)
            try:
                during = ledger.keys(5)
                await ledger.send(sender, during)
                await ledger.until_answered(sender, during)
                await unary_calls_fail_in_time(owner, room.id, unary_key)
                await health.until(NOT_SERVING)
            finally:
                await asyncio.to_thread(end, postgres)
            await health.until(SERVING)

            refused = {key: ledger.refused[key] for key in during if key in ledger.refused}
            assert refused, "every send made during the fault was acknowledged"
            assert set(refused.values()) == {code_pb2.UNAVAILABLE}

            again = ledger.unacked()
            await ledger.send(sender, again)
            await ledger.until_acked(sender, again)
            resent = await post(owner, room.id, unary_key, unary_key)
            after = ledger.keys(2)
            await ledger.send(sender, after)
            await ledger.until_acked(sender, after)
            total = len(ledger.sent) + 1
            delivered = await live.until_messages(total, timeout=RECOVERY_WAIT)

            # A reader that had seen seq 3 comes back.
            async with subscription(reader, room.id, after_seq=3) as resumed:
                caught_up = await resumed.until_messages(total - 3, timeout=RECOVERY_WAIT)

        stored = await stored_keys(url, room.id)
        assert sorted(key for _, key in stored) == sorted([*ledger.sent, unary_key])
        assert [seq for seq, _ in stored] == list(range(1, total + 1))
        by_key = {key: seq for seq, key in stored}
        assert all(by_key[key] == seq for key, seq in ledger.acked.items())
        assert by_key[unary_key] == resent.seq
        assert seqs(delivered) == list(range(1, total + 1))
        assert seqs(caught_up) == list(range(4, total + 1))


async def test_a_post_whose_commit_answer_is_lost_reaches_streams_once_the_database_answers(
    people: People, database_url: str, dial: Dial
) -> None:
    """The COMMIT reaches PostgreSQL, its answer never comes back: the post fails
    UNAVAILABLE (its outcome unknown to the server), and yet it was stored, so
    the process catches up: live streams get it, and resending it stores nothing new."""
    owner = await people.user()
    room = await people.channel(owner)
    async with proxied(database_url) as (proxy, through_proxy), serving(through_proxy) as (app, _):
        here = await dial(app.port, owner)
        async with subscription(here, room.id, history_limit=0) as live:
            await live.until(lambda feed: bool(feed.of("joined")))
            proxy.silence_after(b"COMMIT")
            await answers_unavailable(
                here.api.chat.SendMessage(
                    chat_pb2.SendMessageRequest(
                        channel_id=room.id, content="its answer was lost", client_message_id="k"
                    ),
                    timeout=ANSWER_WITHIN,
                )
            )
            assert proxy.silenced.is_set()
            (delivered,) = await live.until_messages(1, timeout=RECOVERY_WAIT)
            assert delivered.content == "its answer was lost"
            again = await post(here, room.id, "its answer was lost", "k")
    assert again.seq == delivered.seq == 1
    rows = await sql(database_url, "SELECT seq FROM messages WHERE channel_id = $1", room.id)
    assert [row["seq"] for row in rows] == [1]
