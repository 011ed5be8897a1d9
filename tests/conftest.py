"""Fixtures: a real PostgreSQL (DATABASE_URL's server, or an embedded one),
a fresh database per test session, and the real server on a free port."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# As `atomchat serve` does (cli.main), before gRPC is first imported: the children
# the tests start (Envoy, whose preexec_fn makes subprocess fork rather than
# vfork) exec at once and never use gRPC, and gRPC's fork handlers in them can
# abort the child ("epoll_wait error: Bad file descriptor", status -6).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import pytest

from atomchat_server.app import App
from atomchat_server.config import Settings
from atomchat_server.db.embedded import EmbeddedPostgres
from atomchat_server.db.engine import Database
from atomchat_server.limits import LimitSettings
from atomchat_server.seeding import seed
from devsupport import fresh_database
from tests.support import People, Person

# Tests act for many users from one address: every limit is off but where a
# test turns one on.
NO_LIMITS = LimitSettings(
    login_failures=0,
    auth_per_minute=0,
    message_rate=0,
    message_burst=0,
    streams_per_user=0,
    channels_per_hour=0,
)
TEST_SETTINGS = Settings(
    limits=NO_LIMITS,
    grpc_port=0,
    envoy=False,
    jwt_secret="test-secret-" + "x" * 32,
    heartbeat_seconds=15.0,
    presence_grace_seconds=2.0,
    shutdown_grace=1.0,
)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The PostgreSQL server tests create their databases on."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="atomchat-pg-") as folder:
        embedded = EmbeddedPostgres(Path(folder))
        yield embedded.start()
        embedded.stop()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this test session, migrated and seeded."""
    async with fresh_database(postgres_server_url) as url:
        database = Database(url)
        await seed(database)
        await database.dispose()
        yield url


@pytest.fixture(scope="session")
def settings() -> Settings:
    return TEST_SETTINGS


@pytest.fixture(scope="session")
async def app(database_url: str, settings: Settings) -> AsyncIterator[App]:
    app = App(settings, database_url)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture(scope="session")
async def grpc_channel(app: App) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield channel


@pytest.fixture(scope="session")
def people(grpc_channel: grpc.aio.Channel, database_url: str) -> People:
    return People(grpc_channel, database_url)


def with_settings(**changes: object) -> Settings:
    return replace(TEST_SETTINGS, **changes)  # type: ignore[arg-type]


Dial = Callable[..., Awaitable[Person]]


@pytest.fixture
async def dial(database_url: str) -> AsyncIterator[Dial]:
    """log_in(port, person, options=None): `person` logged in again through a connection
    of their own to the server on `port` (closed when the test ends)."""
    connections: list[grpc.aio.Channel] = []

    async def log_in(
        port: int, person: Person, options: Sequence[tuple[str, Any]] | None = None
    ) -> Person:
        connection = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        connections.append(connection)
        return await People(connection, database_url).login(person.username, person.password)

    yield log_in
    for connection in connections:
        await connection.close()
