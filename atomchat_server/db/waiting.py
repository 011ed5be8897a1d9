"""Waiting for a database that is starting (or not there yet), with one line per reason.

`wait_for_database` connects until PostgreSQL answers or `seconds` have
passed. It logs once when it starts waiting and then every
LOG_EVERY_SECONDS, not once per attempt. Failures that waiting cannot fix
(a database that does not exist, a refused password) end it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from sqlalchemy.engine import make_url

from atomchat_server.db.engine import asyncpg_dsn

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.25
LOG_EVERY_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0
# SQLSTATEs worth waiting through: connection failures, "the database system is
# starting up" / "shutting down", too many connections.
TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "53")


class DatabaseUnreachable(ConnectionError):
    """PostgreSQL did not answer within the wait."""


def where(url: str) -> str:
    """host:port of a database URL, for messages (never the password)."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def _transient(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state:
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES
    return isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("[Errno") else text


async def wait_for_database(url: str, *, seconds: float) -> None:
    """Return once PostgreSQL at `url` answers; DatabaseUnreachable after `seconds`."""
    deadline = time.monotonic() + seconds
    next_log = 0.0
    while True:
        try:
            connection = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as exc:
            if not _transient(exc):
                raise
            now = time.monotonic()
            if now >= deadline:
                raise DatabaseUnreachable(
                    f"cannot reach PostgreSQL at {where(url)} ({_reason(exc)}) after "
                    f"{seconds:g} s: is it running? Check DATABASE_URL"
                ) from exc
            if now >= next_log:
                waited = "" if next_log == 0.0 else f", {seconds - (deadline - now):.0f} s so far"
                log.info("waiting for PostgreSQL at %s (%s%s)", where(url), _reason(exc), waited)
                next_log = now + LOG_EVERY_SECONDS
            await asyncio.sleep(RETRY_SECONDS)
        else:
            await connection.close()
            return
