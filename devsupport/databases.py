"""Scratch databases: each made fresh on a PostgreSQL server, used, and dropped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine import make_url

from atomchat_server.db.migrate import upgrade

# The database every PostgreSQL server has, connected to for CREATE and DROP.
MAINTENANCE_DATABASE = "postgres"


def admin_dsn(url: str, database: str | None = None) -> str:
    """`url` as asyncpg takes it (postgresql://, password kept); for `database` if given."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def database_name(url: str) -> str:
    return str(make_url(url).database)


async def _maintain(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(admin_dsn(server_url, MAINTENANCE_DATABASE))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(server_url: str, *, prefix: str = "atomchat_test") -> str:
    """A new, empty database `<prefix>_<random>` on the server of `server_url`; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _maintain(server_url, f'CREATE DATABASE "{name}"')
    return admin_dsn(server_url, name)


async def drop_database(url: str) -> None:
    """Drop the database of `url`, closing any connection to it."""
    await _maintain(url, f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_database(
    server_url: str, *, migrated: bool = True, prefix: str = "atomchat_test"
) -> AsyncIterator[str]:
    """A database of its own (migrated to head unless told otherwise), dropped afterwards."""
    url = await create_database(server_url, prefix=prefix)
    try:
        if migrated:
            await upgrade(url)
        yield url
    finally:
        await drop_database(url)
