"""The call the running code serves, in a context variable.

Set by the calls' interceptor (calls.py) and read by every log line
(logs.py). Nothing here imports gRPC, so that a process that only logs (the
poster's) does not load it.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass, field


@dataclass(slots=True)
class Call:
    method: str
    peer: str
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    user_id: int | None = None


_current: ContextVar[Call | None] = ContextVar("atomchat_call", default=None)


def current_call() -> Call | None:
    """The call the running code serves, if any."""
    return _current.get()


def bind(call: Call) -> Token[Call | None]:
    return _current.set(call)


def unbind(token: Token[Call | None]) -> None:
    _current.reset(token)


def note_caller(user_id: int) -> None:
    """The authenticated caller's id, into the current call (and so its log line)."""
    call = _current.get()
    if call is not None:
        call.user_id = user_id
