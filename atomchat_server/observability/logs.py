"""Log lines, as text for people or as one JSON object per line for machines.

Every line written while a call runs carries that call's context (method,
user id, peer, call id: observability/calls.py); the line that ends a call
adds its status code and duration. `--log-format json` writes:

    {"time": "2026-12-02T10:00:00.123Z", "level": "INFO", "logger": "atomchat.calls",
     "message": "/atomchat.v1.UserService/GetMe OK in 1.2 ms",
     "method": "/atomchat.v1.UserService/GetMe", "user_id": 4,
     "peer": "ipv4:127.0.0.1:50312", "call_id": "9f1c2a4b6d8e0f13",
     "grpc_code": "OK", "duration_seconds": 0.0012}

A traceback, when there is one, is the `exception` field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from atomchat_server.observability.call_context import current_call

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes a LogRecord's `extra` may carry into a JSON line.
EXTRA_FIELDS = ("grpc_code", "duration_seconds")


class CallContext(logging.Filter):
    """Copies the current call's context onto each record (read where the line is written)."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = current_call()
        if call is not None and not hasattr(record, "method"):
            record.method = call.method
            record.user_id = call.user_id
            record.peer = call.peer
            record.call_id = call.call_id
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        call_id = getattr(record, "call_id", None)
        if call_id is None:
            return line
        user = getattr(record, "user_id", None)
        peer = getattr(record, "peer", "")
        context = f" [call {call_id} user {user if user is not None else '-'} {peer}]"
        head, newline, rest = line.partition("\n")
        return head + context + newline + rest


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if hasattr(record, "call_id"):
            for name in ("method", "user_id", "peer", "call_id"):
                entry[name] = getattr(record, name, None)
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str) -> None:
    """One handler on the root logger, to stderr, in `log_format` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(CallContext())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic announces each of its plugins at INFO on import.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def current() -> tuple[str, str]:
    """The root logger's level and format, as `configure` takes them (for a child process)."""
    root = logging.getLogger()
    json_lines = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return logging.getLevelName(root.getEffectiveLevel()), "json" if json_lines else "text"
