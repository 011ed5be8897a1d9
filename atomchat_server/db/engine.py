"""The engine, one session per unit of work, and what happens after a commit.

Every wait is bounded by `Timeouts` (db/timeouts.py); a pool that cannot
hand out a connection in time, or a connection SQLAlchemy finds lost, is
mapped as no connection (`NO_CONNECTION`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from atomchat_server.db import errors as driver_errors
from atomchat_server.db.session_info import AFTER_COMMIT_KEY, ORIGIN_KEY
from atomchat_server.db.timeouts import Timeouts, session_settings
from atomchat_server.domain import errors

# No connection, as SQLAlchemy says it: its wrappers of the driver's failures,
# and its pool's timeout.
NO_CONNECTION: driver_errors.NoConnection = (
    *driver_errors.NO_CONNECTION,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


def sqlalchemy_url(url: str) -> str:
    """postgresql://… as the asyncpg dialect of SQLAlchemy wants it."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """postgresql://… as asyncpg itself wants it (for the LISTEN connection)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class Database:
    """An async engine and its sessions.

    `transaction()` is the unit of work: one session, one transaction,
    committed on success. Items queued with `queue_after_commit` reach
    `on_commit` only after the commit succeeded, so no one hears of a change
    that did not happen. `origin` names this process in the notifications
    its sessions emit. Every wait is bounded by `timeouts`; `on_unavailable`
    hears of every unit of work that found the database unable to answer.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        on_commit: Callable[[Sequence[object]], None] | None = None,
        origin: str = "",
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = url
        self.origin = origin
        self.timeouts = timeouts or Timeouts()
        self.engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            pool_timeout=self.timeouts.acquire,
            connect_args={
                **self.timeouts.connect_arguments(),
                "server_settings": session_settings("atomchat", self.timeouts),
            },
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.on_commit = on_commit
        self.on_unavailable: Callable[[], None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One session in one transaction; the driver's failures come out as domain errors."""
        with self._mapped():
            async with self._sessions() as session:
                session.info[ORIGIN_KEY] = self.origin
                async with session.begin():
                    yield session
                queued = session.info.pop(AFTER_COMMIT_KEY, None)
        if queued and self.on_commit is not None:
            self.on_commit(queued)

    async def ping(self) -> None:
        with self._mapped():
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """mapped_driver_errors(), telling `on_unavailable` when the database could not answer."""
        try:
            with driver_errors.mapped_driver_errors(NO_CONNECTION):
                yield
        except errors.Unavailable as error:
            if error.reason == errors.Reason.DATABASE_UNAVAILABLE and self.on_unavailable:
                self.on_unavailable()
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()
