"""The authenticator's cache never outlives a block: not after the listener
reconnects, and not past its age limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from atomchat.v1 import users_pb2

from atomchat_server.app import App
from atomchat_server.auth.interceptor import Authenticator
from atomchat_server.auth.tokens import Tokens
from atomchat_server.db.engine import Database
from atomchat_server.domain import errors
from tests.conftest import TEST_SETTINGS, with_settings
from tests.support import People, fails, sql
from tests.tcp_proxy import proxied


async def test_a_user_blocked_while_a_process_listener_was_down_is_refused_there_next(
    people: People, database_url: str
) -> None:
    """The other process holds no streams, so only the reconnect tells it anything."""
    moderator, user = await people.moderator(), await people.user()
    async with proxied(database_url) as (proxy, through_proxy):
        other = App(with_settings(auth_cache_seconds=3600.0), through_proxy)
        await other.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
                there = await People(channel, database_url).login(user.username, user.password)
                await there.api.users.GetMe(users_pb2.GetMeRequest())  # now cached there

                proxy.refuse_new = True
                await sql(
                    database_url,
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                    " WHERE application_name = 'atomchat-listener' AND client_port = ANY($1)",
                    proxy.upstream_ports(),
                )
                # The other process cannot listen again yet: it misses this block.
                await moderator.api.users.BlockUser(users_pb2.BlockUserRequest(user_id=user.id))
                reconnects = other.bus.reconnects
                proxy.refuse_new = False
                await other.bus.wait_for_reconnects(reconnects + 1)

                failure = await fails(
                    there.api.users.GetMe(users_pb2.GetMeRequest()),
                    grpc.StatusCode.UNAUTHENTICATED,
                )
                assert failure.message == errors.INVALID_CREDENTIALS
        finally:
            await other.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


TOKENS = Tokens(
    secret=TEST_SETTINGS.jwt_secret, lifetime=timedelta(minutes=TEST_SETTINGS.token_minutes)
)


async def test_a_cached_user_is_read_again_once_the_entry_is_older_than_the_limit(
    people: People, database: Database, database_url: str
) -> None:
    user = await people.user()
    clock = Clock()
    authenticator = Authenticator(TOKENS, database, max_age=30.0, clock=clock)
    assert (await authenticator.actor(user.api.metadata)).user_id == user.id
    # Blocked behind this authenticator's back: no event reaches it.
    await sql(database_url, "UPDATE users SET is_active = false WHERE id = $1", user.id)
    clock.now = 29.0
    assert (await authenticator.actor(user.api.metadata)).user_id == user.id
    clock.now = 30.0
    with pytest.raises(errors.Unauthenticated):
        await authenticator.actor(user.api.metadata)


async def test_forgetting_everyone_reads_every_user_again(
    people: People, database: Database, database_url: str
) -> None:
    user = await people.user()
    authenticator = Authenticator(TOKENS, database, max_age=3600.0)
    await authenticator.actor(user.api.metadata)
    await sql(database_url, "UPDATE users SET is_active = false WHERE id = $1", user.id)
    await authenticator.actor(user.api.metadata)
    authenticator.forget_everyone()
    with pytest.raises(errors.Unauthenticated):
        await authenticator.actor(user.api.metadata)
