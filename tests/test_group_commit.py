"""The group committer's transaction: its opening runs inside it, and a failed
batch leaves nothing behind, its opening included. Its lanes: one waiting
for PostgreSQL does not hold the others up, and each keeps its order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.group_commit import GroupCommitter
from devsupport import fresh_database
from tests.support import eventually, sql


@dataclass
class Item:
    """Inserts its value; an item with `broken` set fails inside the batch."""

    value: int
    future: asyncio.Future[int]
    broken: bool = False
    outcome: int | BaseException | None = field(default=None, repr=False)

    def reset(self) -> None:
        self.outcome = None

    def fail(self, error: BaseException) -> None:
        self.outcome = error

    def settle(self) -> None:
        if isinstance(self.outcome, BaseException):
            self.future.set_exception(self.outcome)
        elif self.outcome is not None:
            self.future.set_result(self.outcome)


async def write(connection: asyncpg.Connection, batch: list[Item]) -> list[object]:
    for item in batch:
        await connection.execute("INSERT INTO items VALUES ($1)", item.value)
        if item.broken:
            raise ValueError(f"item {item.value} is broken")
        item.outcome = item.value
    return []


def opening(batch: list[Item]) -> str:
    """Marks each batch's transaction with a row of its own: -(its first value)."""
    return f"INSERT INTO items VALUES ({-batch[0].value:d})"  # noqa: S608 - an integer


def by_value(item: Item) -> int:
    return item.value


@asynccontextmanager
async def committer(
    postgres_server_url: str, *, lanes: int = 1
) -> AsyncIterator[tuple[GroupCommitter[Item], str]]:
    async with fresh_database(postgres_server_url, migrated=False) as url:
        setup = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await setup.execute("CREATE TABLE items (value integer PRIMARY KEY)")
        finally:
            await setup.close()
        commits: GroupCommitter[Item] = GroupCommitter(
            asyncpg_dsn(url),
            write_batch=write,
            opening=opening,
            on_commit=lambda _: None,
            max_batch=100,
            application_name="test-committer",
            lanes=lanes,
            lane_of=by_value if lanes > 1 else None,
        )
        commits.start()
        try:
            yield commits, url
        finally:
            await commits.close()


async def stored(url: str) -> list[int]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return [row[0] for row in await connection.fetch("SELECT value FROM items ORDER BY value")]
    finally:
        await connection.close()


async def test_a_batch_and_its_opening_commit_together(postgres_server_url: str) -> None:
    async with committer(postgres_server_url) as (commits, url):
        items = [Item(value, asyncio.get_running_loop().create_future()) for value in (1, 2, 3)]
        for item in items:
            commits.submit(item)
        assert await asyncio.gather(*(item.future for item in items)) == [1, 2, 3]
        rows = await stored(url)
    # However the three were batched, each batch's opening row is there with them.
    assert [row for row in rows if row > 0] == [1, 2, 3]
    assert -1 in rows


async def test_a_failed_batch_is_rolled_back_opening_and_all(postgres_server_url: str) -> None:
    async with committer(postgres_server_url) as (commits, url):
        # However the committer batches them, the batch holding the broken item
        # fails and is retried one by one.
        first = Item(10, asyncio.get_running_loop().create_future())
        queued = [
            Item(20, asyncio.get_running_loop().create_future()),
            Item(30, asyncio.get_running_loop().create_future(), broken=True),
            Item(40, asyncio.get_running_loop().create_future()),
        ]
        commits.submit(first)
        for item in queued:
            commits.submit(item)
        results = await asyncio.gather(
            first.future, *(item.future for item in queued), return_exceptions=True
        )
        rows = await stored(url)
    assert results[:2] == [10, 20]
    assert isinstance(results[2], ValueError)
    assert results[3] == 40
    # The failed batch's opening row was rolled back with it: the retry of its
    # first item inserted the same row again, which the primary key would
    # otherwise have refused. The broken item's own opening went with it.
    assert [row for row in rows if row > 0] == [10, 20, 40]
    assert -30 not in rows
    assert {-10, -20, -40} <= set(rows)


async def test_a_lane_waiting_for_a_lock_does_not_hold_up_another(
    postgres_server_url: str,
) -> None:
    async with committer(postgres_server_url, lanes=2) as (commits, url):
        blocker = await asyncpg.connect(asyncpg_dsn(url))
        try:
            # Another transaction holds value 2's key: lane 0's insert of 2 waits for it.
            await blocker.execute("BEGIN; INSERT INTO items VALUES (2)")
            waiting = Item(2, asyncio.get_running_loop().create_future())
            commits.submit(waiting)
            await eventually(lambda: a_session_waits_for_a_lock(url))
            # Lane 1 commits meanwhile (its row's opening, -3, too).
            meanwhile = Item(3, asyncio.get_running_loop().create_future())
            commits.submit(meanwhile)
            assert await asyncio.wait_for(meanwhile.future, 10) == 3
            assert not waiting.future.done()
            assert await stored(url) == [-3, 3]
            await blocker.execute("ROLLBACK")
        finally:
            await blocker.close()
        assert await waiting.future == 2
        assert await stored(url) == [-3, -2, 2, 3]


async def test_each_lane_keeps_the_order_of_its_work(postgres_server_url: str) -> None:
    async with committer(postgres_server_url, lanes=2) as (commits, url):
        setup = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await setup.execute(
                "ALTER TABLE items ADD COLUMN written bigint GENERATED ALWAYS AS IDENTITY"
            )
            values = list(range(1, 201))
            items = [Item(value, asyncio.get_running_loop().create_future()) for value in values]
            for item in items:
                commits.submit(item)
            assert await asyncio.gather(*(item.future for item in items)) == values
            rows = await setup.fetch("SELECT value FROM items WHERE value > 0 ORDER BY written")
        finally:
            await setup.close()
    written = [row["value"] for row in rows]
    assert sorted(written) == values
    # Odd and even values went through different lanes; each lane wrote its own in order.
    assert [value for value in written if value % 2] == values[0::2]
    assert [value for value in written if not value % 2] == values[1::2]


async def a_session_waits_for_a_lock(url: str) -> bool:
    """Asked on a connection of its own, outside any transaction: inside one,
    pg_stat_activity stays as it was first read."""
    return bool(
        await sql(
            url,
            "SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    )
