"""The engine, one session per unit of work, and what happens after a commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from atomchat_server.db.errors import mapped_driver_errors

AFTER_COMMIT_KEY = "atomchat.after_commit"
ORIGIN_KEY = "atomchat.origin"


def sqlalchemy_url(url: str) -> str:
    """postgresql://… as the asyncpg dialect of SQLAlchemy wants it."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """postgresql://… as asyncpg itself wants it (for the LISTEN connection)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def session_settings(application_name: str) -> dict[str, str]:
    """The settings of every connection the service opens.

    Statements are prepared once per connection, and connections live as
    long as the server. A generic plan, chosen while a table was small,
    would stay: a lookup joined to a list of keys, planned on an empty
    messages table, scans the whole table on every call once it has grown.
    So each statement is planned for its own arguments (a fraction of a
    millisecond), and without JIT, which costs more than it saves on
    queries this short.
    """
    return {
        "application_name": application_name,
        "jit": "off",
        "plan_cache_mode": "force_custom_plan",
    }


def queue_after_commit(session: AsyncSession, item: object) -> None:
    """Hand `item` to the database's on_commit callback once this session commits."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(item)


class Database:
    """An async engine and its sessions.

    `transaction()` is the unit of work: one session, one transaction,
    committed on success. Items queued with `queue_after_commit` reach
    `on_commit` only after the commit succeeded, so no one hears of a change
    that did not happen. `origin` names this process in the notifications
    its sessions emit.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        on_commit: Callable[[Sequence[object]], None] | None = None,
        origin: str = "",
    ) -> None:
        self.url = url
        self.origin = origin
        self.engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            connect_args={"server_settings": session_settings("atomchat")},
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.on_commit = on_commit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One session in one transaction; the driver's failures come out as domain errors."""
        with mapped_driver_errors():
            async with self._sessions() as session:
                session.info[ORIGIN_KEY] = self.origin
                async with session.begin():
                    yield session
                queued = session.info.pop(AFTER_COMMIT_KEY, None)
        if queued and self.on_commit is not None:
            self.on_commit(queued)

    async def ping(self) -> None:
        with mapped_driver_errors():
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
