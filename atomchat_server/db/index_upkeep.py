"""The search indexes' pending lists, merged off the posting path.

`messages` has two GIN indexes (its words, and its pairs of adjacent
words). GIN adds a new row's keys to a pending list, which is cheap per row,
and merges the list into the index once it outgrows gin_pending_list_limit
(4 MB): the statement whose insert crosses the limit does the merge. On the
posting path that statement is a batch's insert, made while the batch holds
its channels' locks, so every post of the process waits for the merge.
Measured with the poster's insert alone (`python -m bench.pending_lists`): a
stall of 90–260 ms every 9 s at 4,000 posts a second of benchmark text, and
of 0.5–0.8 s at 2,000 posts a second of 14 words each.

So a process that has written messages merges the lists itself, on a
connection of its own, one merge starting per `interval` at most:
gin_clean_pending_list for every GIN index of the schema, in one statement.
Inserts go on adding to the lists meanwhile; the merge holds no lock they
wait for. (Turning the
lists off, fastupdate = off, makes every insert update the index: commits
of 14-word posts took 70% longer.)

The function needs the index's owner, as VACUUM does: a role that may not run
it is logged once, and the merging is left to the inserts, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from atomchat_server.db.timeouts import Timeouts, session_settings
from atomchat_server.observability import metrics

log = logging.getLogger(__name__)

APPLICATION_NAME = "atomchat-index-upkeep"
INTERVAL_SECONDS = 1.0
# A merge of a busy second's keys took up to 1.8 s on two cores; it may be
# slower, and stopping it half way saves nothing.
MERGE_SECONDS = 60.0
_MERGE = (
    "SELECT coalesce(sum(gin_clean_pending_list(c.oid)), 0)::bigint"
    " FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
    " WHERE a.amname = 'gin' AND c.relkind = 'i'"
    " AND c.relnamespace = current_schema()::regnamespace"
)


class PendingListMerger:
    """Merges the GIN indexes' pending lists once writes were noted, at most once per interval."""

    def __init__(
        self,
        dsn: str,
        *,
        timeouts: Timeouts | None = None,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._dsn = dsn
        self._timeouts = timeouts or Timeouts()
        self._interval = interval
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        # Merges run, and the pending pages they merged.
        self.merges = 0
        self.pages = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="index-upkeep")

    def note_writes(self) -> None:
        """Messages were written: merge what they added, now or once the interval is over."""
        self._due.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._drop_connection()

    async def merge(self) -> int:
        """Merge every pending list now; the number of pending pages merged."""
        connection = await self._connect()
        started = time.perf_counter()
        pages: int = await connection.fetchval(_MERGE, timeout=MERGE_SECONDS)
        metrics.INDEX_MERGE_SECONDS.observe(time.perf_counter() - started)
        metrics.INDEX_MERGED_PAGES.inc(pages)
        self.merges += 1
        self.pages += pages
        return pages

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            started = time.monotonic()
            try:
                await self.merge()
            except asyncpg.InsufficientPrivilegeError as exc:
                log.warning("the search indexes are merged by inserts only: %s", exc)
                return
            except Exception as exc:  # noqa: BLE001 - upkeep: the next writes try again
                log.warning("cannot merge the search indexes' pending lists: %r", exc)
                self._drop_connection()
            # One merge starts every interval at most: back to back when a merge
            # takes longer, as the lists fill faster than one merge a second empties.
            await asyncio.sleep(max(0.0, started + self._interval - time.monotonic()))

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            settings = session_settings(APPLICATION_NAME, self._timeouts)
            settings["statement_timeout"] = f"{round(MERGE_SECONDS * 1000)}ms"
            self._connection = await asyncpg.connect(
                self._dsn,
                timeout=self._timeouts.connect,
                server_settings=settings,
            )
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
