"""The database driver's failures as the domain's errors: mapped once, here.

    driver failure (asyncpg, or SQLAlchemy around it)        domain error
    ─────────────────────────────────────────────────────    ──────────────────────────────
    no connection: refused, lost, reset, timed out (OSError,  Unavailable DATABASE_UNAVAILABLE
      asyncpg's connection and interface errors; where
      SQLAlchemy is used, db/engine.py adds its
      OperationalError, InterfaceError and pool timeout)
    SQLSTATE class 08 (connection), 53 (insufficient          Unavailable DATABASE_UNAVAILABLE
      resources), 57 (operator intervention: shutting down,
      starting up, statement timeout)
    SQLSTATE 22021, 22P05 (text PostgreSQL cannot store)      InvalidArgument INVALID_TEXT
    anything else                                             not mapped: a bug, left to surface

`mapped_driver_errors()` wraps every unit of work (`Database.transaction`)
and the poster's batch commits, so the rest of the service sees only domain
errors and bugs (the httpx `map_exceptions` pattern). This module does not
load SQLAlchemy: the poster's process speaks to asyncpg alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from atomchat_server.domain import errors

log = logging.getLogger(__name__)

UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
NoConnection = tuple[type[BaseException], ...]
# What the driver raises when there is no connection to speak of.
NO_CONNECTION: NoConnection = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped, and what that was raised from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        original = getattr(current, "orig", None)
        current = original if isinstance(original, BaseException) else current.__cause__


def _sqlstate(exc: BaseException) -> str | None:
    for cause in _causes(exc):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
    return None


def domain_error(
    exc: BaseException, no_connection: NoConnection = NO_CONNECTION
) -> errors.DomainError | None:
    """The domain error a driver failure means, or None when it is not the driver's;
    `no_connection`: the failures that mean there is no connection."""
    if isinstance(exc, errors.DomainError):
        return exc
    state = _sqlstate(exc)
    if state in UNSTORABLE_TEXT_SQLSTATES:
        return errors.unstorable_text()
    if state is not None and state[:2] in UNAVAILABLE_SQLSTATE_CLASSES:
        return errors.database_unavailable()
    if state is None and any(isinstance(cause, no_connection) for cause in _causes(exc)):
        return errors.database_unavailable()
    return None


@contextmanager
def mapped_driver_errors(no_connection: NoConnection = NO_CONNECTION) -> Iterator[None]:
    """Raise the domain error a driver failure inside the block means (from the failure)."""
    try:
        yield
    except errors.DomainError:
        raise
    except Exception as exc:
        mapped = domain_error(exc, no_connection)
        if mapped is None:
            raise
        log.warning("database: %s (%s)", mapped.reason, _describe(exc))
        raise mapped from exc


def _describe(exc: BaseException) -> str:
    innermost = list(_causes(exc))[-1]
    return f"{type(innermost).__name__}: {innermost}"
