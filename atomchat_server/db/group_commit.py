"""Group commit: queued work written in batches, one transaction each.

A `GroupCommitter` runs on the loop that started it: the poster's process
(poster_process.py), which does nothing else, so that the round trips of a
batch never wait behind the server's fan-out, nor for the interpreter lock
the server's loop holds. Whatever has queued up when a lane wakes is written
by the domain's `write_batch` in one transaction (PostgreSQL serialises the
commits of transactions that NOTIFY, so many posts sharing a commit is what
makes posting scale). After the transaction has ended, `on_commit` is given
the batch's events and each item is settled.

The transaction begins with the domain's `opening` statements (its locks),
sent with BEGIN in one round trip, and ends with a COMMIT of its own.

Lanes: work can be spread over several lanes by `lane_of` (the poster
spreads channels), each with its own queue and connection. One lane's batch
is written while another's waits for PostgreSQL: a lone committer left
PostgreSQL idle while it put its next batch together and the server idle
while PostgreSQL wrote, so that flat out neither used its core. Work of one
lane keeps its order; work of different lanes may commit in either order.

Bounds: connecting and writing a batch (its commit included) take at most
`timeouts.batch` (half a call's bound, db/timeouts.py), and an item waits for
at most the batch under way in its lane before its own is written.

Failures: a driver failure that means the database is unavailable (a
timeout included) fails the whole batch with that domain error
(db/errors.py), and everything queued behind it in its lane too, at once:
those would only wait for a database that does not answer. The lane's
connection is dropped, to be reopened by its next batch, and
`on_unavailable` is told: a batch that failed while its COMMIT was on its
way may have committed all the same, and nobody has been handed its events.
Any other failure of a batch of several retries them one by one, so one bad
item cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import asyncpg

from atomchat_server.db.errors import domain_error
from atomchat_server.db.timeouts import Timeouts, session_settings
from atomchat_server.domain import errors
from atomchat_server.observability import metrics

log = logging.getLogger(__name__)


class Work(Protocol):
    """One queued item: told its outcome during the batch, settled after it."""

    def reset(self) -> None:
        """Forget a failed batch's outcome before the item is written again alone."""

    def fail(self, error: BaseException) -> None: ...

    def settle(self) -> None:
        """Answer the submitter, once the transaction has ended."""


W = TypeVar("W", bound=Work)
# write_batch(connection, batch): decide and store the batch inside the open
# transaction; returns the events to hand out once it has committed.
WriteBatch = Callable[[asyncpg.Connection, list[W]], Awaitable[Sequence[object]]]
# opening(batch): SQL run in the round trip of the batch's BEGIN, after it: a
# simple query, so literal values only and no rows read back (its locks, say).
Opening = Callable[[list[W]], str]
OnCommit = Callable[[Sequence[object]], None]
# lane_of(work): any integer; work goes to lane lane_of(work) % lanes.
LaneOf = Callable[[W], int]
# observe(items, seconds): a batch written (metrics.observe_commit unless told otherwise).
ObserveCommit = Callable[[int, float], None]


class _Lane(Generic[W]):
    """One queue of work and the connection its batches are written on."""

    __slots__ = ("connection", "queue", "unavailable", "wake")

    def __init__(self) -> None:
        self.queue: deque[W] = deque()
        self.wake = asyncio.Event()
        self.connection: asyncpg.Connection | None = None
        # Set by a batch that found the database unavailable, for what is queued behind it.
        self.unavailable: errors.Unavailable | None = None


class GroupCommitter(Generic[W]):
    def __init__(
        self,
        dsn: str,
        *,
        write_batch: WriteBatch[W],
        opening: Opening[W] | None = None,
        on_commit: OnCommit,
        max_batch: int,
        application_name: str,
        timeouts: Timeouts | None = None,
        on_unavailable: Callable[[], None] | None = None,
        observe: ObserveCommit | None = None,
        lanes: int = 1,
        lane_of: LaneOf[W] | None = None,
    ) -> None:
        if lanes > 1 and lane_of is None:
            raise ValueError("several lanes need lane_of")
        self._dsn = dsn
        self._timeouts = timeouts or Timeouts()
        self._on_unavailable = on_unavailable
        self._observe = observe or metrics.observe_commit
        self._write_batch = write_batch
        self._opening = opening
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._application_name = application_name
        self._lanes: list[_Lane[W]] = [_Lane() for _ in range(max(1, lanes))]
        self._lane_of = lane_of
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def accepting(self) -> bool:
        return self._task is not None and not self._closing

    def start(self) -> None:
        """Start the lanes, on the calling loop."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=self._application_name
        )

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        if self._task is None:
            return
        for lane in self._lanes:
            lane.wake.set()
        await self._task

    def submit(self, work: W) -> None:
        """Queue work; a lane's batches keep the order of submission."""
        if not self.accepting:
            raise errors.shutting_down()
        lanes = self._lanes
        lane = lanes[self._lane_of(work) % len(lanes)] if self._lane_of is not None else lanes[0]
        lane.queue.append(work)
        lane.wake.set()

    async def _run(self) -> None:
        await asyncio.gather(*(self._run_lane(lane) for lane in self._lanes))

    async def _run_lane(self, lane: _Lane[W]) -> None:
        queue = lane.queue
        try:
            while True:
                await lane.wake.wait()
                lane.wake.clear()
                while queue:
                    count = min(len(queue), self._max_batch)
                    batch = [queue.popleft() for _ in range(count)]
                    started = time.perf_counter()
                    emitted = await self._commit(lane, batch)
                    self._observe(len(batch), time.perf_counter() - started)
                    self._answer(batch, emitted)
                    if lane.unavailable is not None:
                        self._fail_queued(lane, lane.unavailable)
                if self._closing:
                    return
        finally:
            if lane.connection is not None:
                await lane.connection.close()

    def _fail_queued(self, lane: _Lane[W], error: errors.Unavailable) -> None:
        """Fail everything queued now: it was queued while the database did not answer."""
        lane.unavailable = None
        queued: list[W] = []
        while lane.queue:
            queued.append(lane.queue.popleft())
        for work in queued:
            work.fail(error)
        if queued:
            log.warning("failing %d queued items: the database is unavailable", len(queued))
            self._answer(queued, [])

    def _answer(self, batch: list[W], emitted: list[object]) -> None:
        """Hand out what was committed, then answer the submitters."""
        if emitted:
            self._on_commit(emitted)
        for work in batch:
            work.settle()

    async def _connect(self, lane: _Lane[W]) -> asyncpg.Connection:
        if lane.connection is not None and lane.connection.is_in_transaction():
            # A batch's ROLLBACK failed: whatever it left open must not take the next batch in.
            self._drop_connection(lane)
        if lane.connection is None or lane.connection.is_closed():
            lane.connection = await asyncpg.connect(
                self._dsn,
                **self._timeouts.connect_arguments(),
                server_settings=session_settings(self._application_name, self._timeouts),
            )
        return lane.connection

    def _drop_connection(self, lane: _Lane[W]) -> None:
        if lane.connection is not None:
            lane.connection.terminate()
            lane.connection = None

    async def _transaction(self, connection: asyncpg.Connection, batch: list[W]) -> list[object]:
        """BEGIN with the batch's opening, the batch, COMMIT; ROLLBACK if any of it fails."""
        opening = self._opening(batch) if self._opening is not None else ""
        try:
            await connection.execute(f"BEGIN;{opening}")
            emitted = list(await self._write_batch(connection, batch))
        except BaseException:
            if not connection.is_closed():
                await connection.execute("ROLLBACK;")
            raise
        await connection.execute("COMMIT;")
        return emitted

    async def _commit(self, lane: _Lane[W], batch: list[W]) -> list[object]:
        """One transaction; every item of the batch gets an outcome. Returns what to hand out."""
        try:
            async with asyncio.timeout(self._timeouts.batch):
                connection = await self._connect(lane)
                return await self._transaction(connection, batch)
        except Exception as exc:
            mapped = domain_error(exc)
            if isinstance(mapped, errors.Unavailable):
                log.warning("cannot commit %d items: %r", len(batch), exc)
                self._drop_connection(lane)
                for work in batch:
                    work.fail(mapped)
                lane.unavailable = mapped
                if self._on_unavailable is not None:
                    self._on_unavailable()
                return []
            if len(batch) > 1:
                log.warning("a batch of %d items failed (%r); one by one now", len(batch), exc)
                emitted: list[object] = []
                for work in batch:
                    if lane.unavailable is not None:
                        work.fail(lane.unavailable)
                        continue
                    work.reset()
                    emitted.extend(await self._commit(lane, [work]))
                return emitted
            if mapped is None:
                log.exception("committing failed")
            batch[0].fail(mapped or exc)
            return []
