"""Running the Alembic migrations from code (`atomchat migrate`, `serve`, tests), and
checking that a database's schema is the one this code needs."""

from __future__ import annotations

from functools import cache
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from atomchat_server.db.engine import sqlalchemy_url

VERSION_TABLE = "alembic_version"


class SchemaError(RuntimeError):
    """The database's schema is not the revision this code needs."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("atomchat_server.migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The newest revision of migrations/ (the one this code needs)."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    if head is None:
        raise RuntimeError("migrations/ has no revision")
    return head


async def revision_of(connection: AsyncConnection) -> str | None:
    """The database's schema revision; None for a database without AtomChat's tables."""
    exists = await connection.scalar(
        text("SELECT to_regclass(:table) IS NOT NULL"), {"table": VERSION_TABLE}
    )
    if not exists:
        return None
    revision = await connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return str(revision) if revision is not None else None


def check_revision(current: str | None) -> None:
    """Raise SchemaError, saying what to do, unless `current` is the head revision."""
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaError(
            "the database has no AtomChat schema: run `atomchat migrate` "
            "(or start with `atomchat serve --migrate`)"
        )
    script = ScriptDirectory.from_config(alembic_config("postgresql://"))
    known = {revision.revision for revision in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database's schema is at revision {current}, which this version of "
            f"AtomChat does not know (it needs {head}): is it newer than this code?"
        )
    raise SchemaError(
        f"the database's schema is at revision {current}, this server needs {head}: "
        "run `atomchat migrate` (or start with `atomchat serve --migrate`)"
    )


async def check_schema(url: str) -> None:
    """SchemaError unless the database at `url` is at the head revision."""
    engine = create_async_engine(sqlalchemy_url(url))
    try:
        async with engine.connect() as connection:
            current = await revision_of(connection)
    finally:
        await engine.dispose()
    check_revision(current)


async def _run(url: str, action: str, revision: str) -> None:
    engine = create_async_engine(sqlalchemy_url(url))

    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(url, "downgrade", revision)
