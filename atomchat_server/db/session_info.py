"""What a unit of work's session carries beside its statements: the items handed
to the database's on_commit callback once it commits, and the origin of the
process that opened it (each process skips the NOTIFYs it sent itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

AFTER_COMMIT_KEY = "atomchat.after_commit"
ORIGIN_KEY = "atomchat.origin"


def queue_after_commit(session: AsyncSession, item: object) -> None:
    """Hand `item` to the database's on_commit callback once this session commits."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(item)
