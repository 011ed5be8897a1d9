"""The engine, one session per unit of work, and what happens after a commit.

Every wait on the database is bounded (SPEC §10). `Timeouts` derives each
bound from the one a call must answer within (ATOMCHAT_DATABASE_TIMEOUT,
10 s by default). The first wait that fails ends the call UNAVAILABLE; at
worst it waited for a pool connection almost as long as allowed, then for a
statement that never answers, and the rollback after it finds the
connection still busy: about half the bound. (PostgreSQL paused for 40 s:
40 ListChannels and 10 Logins at once all answered UNAVAILABLE within
2.5-5.2 s; the next call after it resumed answered at once.)

    wait                                        bound        fails with
    ──────────────────────────────────────────  ───────────  ──────────────────────────
    a connection from the pool                  call / 4     SQLAlchemy's pool timeout
    opening a connection (TCP, startup, auth)   call / 4     TimeoutError (asyncpg)
    one statement, on the server                call / 5     57014 statement_timeout
    one statement, seen from here (a server     call / 4     TimeoutError (asyncpg's
      that stopped answering cancels nothing)                  command_timeout)
    the poster's whole batch (connect, commit)  call / 2     TimeoutError; a post waits
                                                               for one batch before its own

The server-side statement timeout fires first while PostgreSQL is alive (the
connection stays usable); the client-side one covers a server that is
paused or unreachable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from atomchat_server.db.errors import mapped_driver_errors
from atomchat_server.domain import errors

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


DEFAULT_CALL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The bound on each database wait, from the bound on a whole call (module docstring)."""

    call: float = DEFAULT_CALL_SECONDS

    @property
    def acquire(self) -> float:
        return self.call / 4

    @property
    def connect(self) -> float:
        return self.call / 4

    @property
    def statement(self) -> float:
        return self.call / 5

    @property
    def command(self) -> float:
        return self.call / 4

    @property
    def batch(self) -> float:
        return self.call / 2

    def connect_arguments(self) -> dict[str, Any]:
        """asyncpg.connect's keyword arguments for these bounds."""
        return {"timeout": self.connect, "command_timeout": self.command}


def session_settings(application_name: str, timeouts: Timeouts | None = None) -> dict[str, str]:
    """The settings of every connection the service opens.

    Statements are prepared once per connection, and connections live as
    long as the server. A generic plan, chosen while a table was small,
    would stay: a lookup joined to a list of keys, planned on an empty
    messages table, scans the whole table on every call once it has grown.
    So each statement is planned for its own arguments (a fraction of a
    millisecond), and without JIT, which costs more than it saves on
    queries this short. No statement runs longer than `timeouts` allow.
    """
    timeouts = timeouts or Timeouts()
    return {
        "application_name": application_name,
        "jit": "off",
        "plan_cache_mode": "force_custom_plan",
        "statement_timeout": f"{max(1, round(timeouts.statement * 1000))}ms",
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
            with mapped_driver_errors():
                yield
        except errors.Unavailable as error:
            if error.reason == errors.Reason.DATABASE_UNAVAILABLE and self.on_unavailable:
                self.on_unavailable()
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()
