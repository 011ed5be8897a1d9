"""How long each wait on the database may last, and the settings of every connection.

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

from dataclasses import dataclass
from typing import Any

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
