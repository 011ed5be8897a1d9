"""The group committer: a batch written again when its writer asks, once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.group_commit import GroupCommitter, WriteAgain


@dataclass
class Item:
    future: asyncio.Future[str]
    outcome: str | BaseException | None = None
    resets: int = 0

    def reset(self) -> None:
        self.resets += 1
        self.outcome = None

    def fail(self, error: BaseException) -> None:
        self.outcome = error

    def settle(self) -> None:
        if isinstance(self.outcome, BaseException):
            self.future.set_exception(self.outcome)
        elif self.outcome is not None:
            self.future.set_result(self.outcome)


@dataclass
class Writer:
    """Asks for every batch to be written again until `again` attempts have."""

    again: int
    # The connection's backend, per attempt.
    attempts: list[int] = field(default_factory=list)

    async def __call__(self, connection: asyncpg.Connection, batch: list[Item]) -> list[object]:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        self.attempts.append(backend)
        if len(self.attempts) <= self.again:
            raise WriteAgain
        for item in batch:
            item.outcome = f"written on attempt {len(self.attempts)}"
        return []


async def commit_one(url: str, writer: Writer) -> Item:
    committer: GroupCommitter[Item] = GroupCommitter(
        asyncpg_dsn(url),
        write_batch=writer,
        on_commit=lambda _: None,
        max_batch=10,
        application_name="test-committer",
    )
    committer.start()
    try:
        item = Item(committer.caller.create_future())
        committer.submit(item)
        await asyncio.wait({item.future})
        return item
    finally:
        await committer.close()


async def test_a_batch_asking_to_be_written_again_is_written_again(
    postgres_server_url: str,
) -> None:
    writer = Writer(again=1)
    item = await commit_one(postgres_server_url, writer)
    assert item.future.result() == "written on attempt 2"
    assert item.resets == 1
    # The same connection: the first attempt was rolled back, not dropped.
    assert writer.attempts[0] == writer.attempts[1]


async def test_a_batch_asking_twice_fails_instead_of_looping(postgres_server_url: str) -> None:
    writer = Writer(again=10)
    item = await commit_one(postgres_server_url, writer)
    assert isinstance(item.future.exception(), WriteAgain)
    assert len(writer.attempts) == 2
