"""Page sizes and opaque page tokens (AIP-158).

A token is the position after the last item of a page, bound to the list it
came from, so a token from one list is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json

from atomchat_server.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


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
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position = data["p"]
        if data["k"] != kind or not isinstance(position, int):
            raise ValueError(kind)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("Invalid page token", field="page_token") from exc
    return position
