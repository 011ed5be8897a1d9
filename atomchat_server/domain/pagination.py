"""Page sizes and opaque page tokens (AIP-158).

A token is the position after the last item of a page, bound to the list it
came from, so a token from one list is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from atomchat_server.domain.entities import Page
from atomchat_server.domain.errors import InvalidArgument

Row = TypeVar("Row")
View = TypeVar("View")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Positions are ids and seqs: PostgreSQL bigints, never negative.
MAX_POSITION = 2**63 - 1
# Our tokens are a few dozen characters; anything much longer is not one of them.
MAX_TOKEN_LENGTH = 256


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_token(kind: str, position: int) -> str:
    raw = json.dumps({"k": kind, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> int | None:
    """The position a token stands for, or None for the first page."""
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("page token too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position = data["p"]
        if (
            data["k"] != kind
            or not isinstance(position, int)
            or isinstance(position, bool)
            or not 0 <= position <= MAX_POSITION
        ):
            raise ValueError(kind)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("Invalid page token", field="page_token") from exc
    return position


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a requested page starts: after `position` (None: the first page)."""

    kind: str
    limit: int
    position: int | None

    @classmethod
    def read(cls, kind: str, requested_size: int, token: str) -> Cursor:
        return cls(kind, page_size(requested_size), decode_token(kind, token))

    @property
    def fetch(self) -> int:
        """How many rows to read: one more than a page tells whether another follows."""
        return self.limit + 1

    def page(
        self,
        rows: Sequence[Row],
        view: Callable[[Row], View],
        position_of: Callable[[Row], int],
    ) -> Page[View]:
        shown = rows[: self.limit]
        token = encode_token(self.kind, position_of(shown[-1])) if len(rows) > self.limit else ""
        return Page(tuple(view(row) for row in shown), token)
