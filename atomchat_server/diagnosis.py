"""Failures an operator can fix, each as one sentence naming the cause and the fix.

`explain(exc)` returns that sentence, or None for a failure it does not know
(a bug: the traceback is then the right thing to show).
"""

from __future__ import annotations

import asyncio

from atomchat_server.config import ConfigError
from atomchat_server.db.embedded import EmbeddedUnavailable
from atomchat_server.db.errors import _causes  # the failure, its `orig` and `from` chain
from atomchat_server.db.migrate import SchemaError
from atomchat_server.db.waiting import DatabaseUnreachable
from atomchat_server.ports import PortInUse
from atomchat_server.replicas import ReplicaError
from atomchat_server.seeding import SeedError

# SQLSTATE -> what it means for someone starting AtomChat.
SQLSTATES = {
    "3D000": "{detail}: create it (createdb) or fix DATABASE_URL",
    "28P01": "PostgreSQL refused the password ({detail}): check DATABASE_URL",
    "28000": "PostgreSQL refused the connection ({detail}): check DATABASE_URL and pg_hba.conf",
    "42P01": "the database has no AtomChat tables ({detail}): run `atomchat migrate` first",
}
OWN = (
    ConfigError,
    PortInUse,
    SchemaError,
    DatabaseUnreachable,
    EmbeddedUnavailable,
    SeedError,
    ReplicaError,
)


def explain(exc: BaseException) -> str | None:
    if isinstance(exc, BaseExceptionGroup):
        # Startup runs in a task group: the first failure that is not a cancellation.
        for part in exc.exceptions:
            if not isinstance(part, asyncio.CancelledError) and (found := explain(part)):
                return found
        return None
    for cause in _causes(exc):
        found = _sentence(cause)
        if found is not None:
            return found
    return None


def _sentence(cause: BaseException) -> str | None:
    if isinstance(cause, OWN):
        return str(cause)
    state = getattr(cause, "sqlstate", None)
    if isinstance(state, str) and state in SQLSTATES:
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else state
        return SQLSTATES[state].format(detail=detail)
    if type(cause).__name__ == "EnvoyError":
        text = str(cause)
        if "address already in use" in text.lower():
            return "the HTTP port is already in use (another atomchat serve?)"
        return "Envoy did not start: " + text.splitlines()[0]
    return None
