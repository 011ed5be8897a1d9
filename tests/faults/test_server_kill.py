"""A server process killed (SIGKILL) while clients send with client_message_id.

What a user sees: their streams end; on a server started again on the same
database, every message acknowledged before the kill is stored once with the
seq its ack named, resending everything that was not acknowledged (and even
what was) stores nothing twice, and a reader that resumes with after_seq
from the last message it saw gets the rest with no gap and no repeat.
Runs its own PostgreSQL (never the shared one).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from devsupport import Server, serve_atomchat
from tests.chat_support import Chat, Feed, chat, seqs, subscription
from tests.conftest import TEST_SETTINGS
from tests.faults.fault_support import (
    FAULT_TIMEOUT,
    RECOVERY_WAIT,
    Ledger,
    kill_hard,
    own_database,
    stored_keys,
)
from tests.support import Api, People, Person

SENDERS = 3
# Half sent and partly acknowledged before the kill, half sent as it happens.
MESSAGES_EACH = 40
# Acks the clients wait for before the kill: some messages acked, others in flight.
ACKED_BEFORE_KILL = 15


@contextlib.asynccontextmanager
async def server_on(url: str) -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    async with (
        serve_atomchat(
            database_url=url,
            ATOMCHAT_JWT_SECRET=TEST_SETTINGS.jwt_secret,
            ATOMCHAT_DATABASE_TIMEOUT=str(FAULT_TIMEOUT),
        ) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield server, channel


def through(channel: grpc.aio.Channel, person: Person) -> Person:
    """The same person (and token) on another connection."""
    return Person(
        person.id, person.username, person.password, person.token, Api(channel, person.token)
    )


def acks(feed: Feed) -> int:
    return len(feed.of("ack"))


async def test_a_killed_server_loses_nothing_and_a_resend_duplicates_nothing() -> None:
    async with own_database() as (_, url):
        async with server_on(url) as (first, channel):
            people = People(channel, url)
            senders = [await people.user() for _ in range(SENDERS)]
            reader = await people.user()
            room = await people.channel(senders[0], members=(*senders[1:], reader))
            ledgers = [Ledger(f"s{index}") for index in range(SENDERS)]
            async with contextlib.AsyncExitStack() as streams:
                live = await streams.enter_async_context(
                    subscription(reader, room.id, history_limit=0)
                )
                chats: list[Chat] = [
                    await streams.enter_async_context(chat(person, room.id, history_limit=0))
                    for person in senders
                ]
                for ledger, stream in zip(ledgers, chats, strict=True):
                    await ledger.send(stream, ledger.keys(MESSAGES_EACH // 2))
                await chats[0].feed.until(lambda feed: acks(feed) >= ACKED_BEFORE_KILL)
                # More on their way as the server dies: no ack can have come back for
                # these, though some may have been committed.
                for ledger, stream in zip(ledgers, chats, strict=True):
                    await ledger.send(stream, ledger.keys(MESSAGES_EACH // 2))
                kill_hard(first)
                for stream in chats:
                    await stream.feed.until_ended(timeout=RECOVERY_WAIT)
                await live.until_ended(timeout=RECOVERY_WAIT)
                for ledger, stream in zip(ledgers, chats, strict=True):
                    ledger.take_answers(stream.feed)
                seen_before = live.messages()
        acked_before = {key: seq for ledger in ledgers for key, seq in ledger.acked.items()}
        assert len(acked_before) >= ACKED_BEFORE_KILL
        assert any(ledger.unacked() for ledger in ledgers)

        async with server_on(url) as (_, channel):
            again = [through(channel, person) for person in senders]
            for ledger, person in zip(ledgers, again, strict=True):
                # Everything unacknowledged, and one that was acknowledged.
                resend = ledger.unacked() + list(ledger.acked)[:1]
                async with chat(person, room.id, history_limit=0) as stream:
                    await ledger.send(stream, resend)
                    await ledger.until_acked(stream, resend)
            total = SENDERS * MESSAGES_EACH
            last_seen = seen_before[-1].seq if seen_before else 0
            async with subscription(through(channel, reader), room.id, after_seq=last_seen) as rest:
                seen_after = await rest.until_messages(total - last_seen, timeout=RECOVERY_WAIT)
        stored = await stored_keys(url, room.id)

    sent = [key for ledger in ledgers for key in ledger.sent]
    assert sorted(key for _, key in stored) == sorted(sent)
    assert [seq for seq, _ in stored] == list(range(1, total + 1))
    by_key = {key: seq for seq, key in stored}
    assert all(by_key[key] == seq for key, seq in acked_before.items())
    assert all(by_key[key] == seq for ledger in ledgers for key, seq in ledger.acked.items())
    assert seqs(seen_before) == list(range(1, last_seen + 1))
    assert seqs(seen_after) == list(range(last_seen + 1, total + 1))
