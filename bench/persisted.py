"""Messages a run's channels hold in the database: what was persisted, not only acked.

The load generator counts them when its window opens and closes (rows
committed inside the window) and once more after every send was answered
(rows in all, to compare with the acks). One connection of its own, opened
before the run, so that a count costs one round trip.
"""

from __future__ import annotations

import asyncpg

_COUNT = "SELECT count(*) FROM messages WHERE channel_id = ANY($1::bigint[])"


class RowCounter:
    def __init__(self, database_url: str, channel_ids: list[int]) -> None:
        self._url = database_url
        self._channel_ids = channel_ids
        self._connection: asyncpg.Connection | None = None

    async def open(self) -> None:
        self._connection = await asyncpg.connect(self._url)

    async def count(self) -> int:
        if self._connection is None:
            raise RuntimeError("the row counter is not open")
        rows: int = await self._connection.fetchval(_COUNT, self._channel_ids)
        return rows

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
