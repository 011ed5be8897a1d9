"""The poster's process: writes cross to it and their answers back, what it
holds is committed when it is closed, and one that dies fails what it held
and is started again."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
import pytest

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.group_commit import OnCommit
from atomchat_server.domain import errors, events
from atomchat_server.domain.entities import Actor
from atomchat_server.domain.kinds import Role
from atomchat_server.domain.posting import Change, ChangeWork, PostWork, new_change, new_post
from atomchat_server.poster_process import MessagePoster
from devsupport import fresh_database
from tests.support import eventually, one_member_channel


@dataclass
class Setup:
    url: str
    setup: asyncpg.Connection
    poster: MessagePoster
    actor: Actor
    channel_id: int
    committed: list[object] = field(default_factory=list)
    unavailable: list[None] = field(default_factory=list)


@asynccontextmanager
async def poster_on(
    postgres_server_url: str, *, on_commit: OnCommit | None = None
) -> AsyncIterator[Setup]:
    """A fresh database with one member of one channel, and the poster's process on it."""
    async with fresh_database(postgres_server_url) as url:
        setup = await asyncpg.connect(asyncpg_dsn(url))
        try:
            user_id, channel_id = await one_member_channel(setup)
            committed: list[object] = []
            unavailable: list[None] = []
            poster = MessagePoster(
                asyncpg_dsn(url),
                origin="test",
                on_commit=on_commit or committed.extend,
                on_unavailable=lambda: unavailable.append(None),
            )
            await poster.start()
            try:
                actor = Actor(user_id=user_id, username="poster", role=Role.USER)
                yield Setup(url, setup, poster, actor, channel_id, committed, unavailable)
            finally:
                await poster.close()
        finally:
            await setup.close()


def poster_pid(s: Setup) -> int:
    process = s.poster._process
    assert process is not None
    return process.pid


@asynccontextmanager
async def channel_locked(s: Setup) -> AsyncIterator[None]:
    """The channel's row locked by a transaction of another connection while inside."""
    locker = await asyncpg.connect(asyncpg_dsn(s.url))
    try:
        await locker.execute("BEGIN")
        await locker.execute("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE", s.channel_id)
        yield
        await locker.execute("ROLLBACK")
    finally:
        await locker.close()


async def wait_until_blocked(s: Setup) -> None:
    """Until the poster's transaction waits for a lock another transaction holds."""

    async def blocked() -> bool:
        return bool(
            await s.setup.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'atomchat-poster' AND wait_event_type = 'Lock'"
            )
        )

    await eventually(blocked)


def test_domain_errors_cross_between_processes_as_they_are() -> None:
    """A write's domain error reaches the server with its class, reason and details."""
    cases = [
        errors.InvalidArgument("bad", field="content", reason=errors.Reason.BAD_REPLY_TARGET),
        errors.ResourceExhausted(
            "slow down",
            reason=errors.Reason.RATE_LIMITED,
            retry_after=1.5,
            quota="send",
            metadata={"limit": "10"},
        ),
        errors.not_a_member(),
        errors.database_unavailable(),
    ]
    for error in cases:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - made here
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def test_writes_cross_to_the_poster_as_they_were_asked() -> None:
    """A post and a change reach the poster's process with what was asked, and nothing else."""
    actor = Actor(user_id=7, username="ann", role=Role.MODERATOR)
    post = new_post(
        1, actor=actor, channel_id=3, content="hi", client_message_id="k", reply_to_id=9
    )
    post.outcome = errors.not_a_member()
    change = new_change(
        2, actor=actor, channel_id=3, message_id=9, change=Change.REACT, value="\N{THUMBS UP SIGN}"
    )
    post_copy, change_copy = pickle.loads(pickle.dumps([post, change]))  # noqa: S301 - made here
    assert isinstance(post_copy, PostWork)
    assert isinstance(change_copy, ChangeWork)
    assert post_copy == replace(post, outcome=None)
    assert change_copy == change


async def test_posts_cross_to_the_poster_and_their_answers_back(
    postgres_server_url: str,
) -> None:
    """Writes submitted in one turn of the loop are answered in order, each with
    its stored message, and what they committed is handed out before."""
    async with poster_on(postgres_server_url) as s:
        futures = [
            s.poster.submit(actor=s.actor, channel_id=s.channel_id, content=f"m{n}")
            for n in range(50)
        ]
        messages = await asyncio.gather(*futures)
        assert [m.content for m in messages] == [f"m{n}" for n in range(50)]
        assert [m.seq for m in messages] == list(range(1, 51))
        handed_out = [
            entry.seq
            for event in s.committed
            if isinstance(event, events.TimelineAppended)
            for entry in event.entries
        ]
        assert handed_out == list(range(1, 51))
        with pytest.raises(errors.NotFound):
            await s.poster.submit(actor=s.actor, channel_id=s.channel_id + 1, content="nowhere")
        with pytest.raises(errors.InvalidArgument):
            s.poster.submit(actor=s.actor, channel_id=s.channel_id, content=" ")


async def test_closing_commits_what_the_poster_holds(postgres_server_url: str) -> None:
    """Writes still queued when the server closes its poster are committed and answered."""
    async with poster_on(postgres_server_url) as s:
        async with channel_locked(s):
            futures = [
                s.poster.submit(actor=s.actor, channel_id=s.channel_id, content=f"m{n}")
                for n in range(20)
            ]
            await wait_until_blocked(s)
            closing = asyncio.ensure_future(s.poster.close())
            # The server's side of the socket ends; the poster still holds the writes.
            await asyncio.sleep(0.2)
            assert not closing.done()
        await closing
        messages = await asyncio.gather(*futures)
        assert [m.seq for m in messages] == list(range(1, 21))
        assert await s.setup.fetchval("SELECT count(*) FROM messages") == 20
        with pytest.raises(errors.Unavailable):
            s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="late")


async def test_a_poster_that_dies_fails_what_it_held_and_is_started_again(
    postgres_server_url: str,
) -> None:
    """Killed with writes under way, the poster's process fails them UNAVAILABLE,
    says so, and a new one takes the next writes."""
    async with poster_on(postgres_server_url) as s:
        await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="before")
        first = poster_pid(s)
        async with channel_locked(s):
            held = [
                s.poster.submit(actor=s.actor, channel_id=s.channel_id, content=f"held {n}")
                for n in range(5)
            ]
            await wait_until_blocked(s)
            os.kill(first, signal.SIGKILL)
            for future in held:
                with pytest.raises(errors.Unavailable) as failed:
                    await future
                assert failed.value.reason is errors.Reason.DATABASE_UNAVAILABLE
            assert s.unavailable

        async def started_again() -> bool:
            process = s.poster._process
            return process is not None and process.pid != first and s.poster._writer is not None

        await eventually(started_again)
        after = await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="after")
        assert after.seq == 2
        assert await s.setup.fetchval("SELECT count(*) FROM messages") == 2


async def test_a_batch_that_cannot_be_handed_out_is_answered_all_the_same(
    postgres_server_url: str,
) -> None:
    """Handing out a committed batch fails (a bug downstream): its writes, and
    those after them, are still answered."""

    def broken(emitted: Sequence[object]) -> None:
        raise RuntimeError("cannot hand out")

    async with poster_on(postgres_server_url, on_commit=broken) as s:
        first = await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="one")
        second = await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="two")
        assert (first.seq, second.seq) == (1, 2)


async def test_writes_wait_for_a_poster_that_cannot_start_again_no_longer_than_one_attempt(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the poster cannot be started again, a write fails UNAVAILABLE after
    the next attempt instead of waiting for a poster that does not come."""
    async with poster_on(postgres_server_url) as s:
        first = poster_pid(s)

        async def cannot_start(*args: object, **kwargs: object) -> None:
            raise OSError("no more processes")

        monkeypatch.setattr(asyncio, "create_subprocess_exec", cannot_start)
        os.kill(first, signal.SIGKILL)

        async def noticed() -> bool:
            return bool(s.unavailable)

        await eventually(noticed)
        waiting = s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="meanwhile")
        with pytest.raises(errors.Unavailable):
            await asyncio.wait_for(waiting, 5)
        monkeypatch.undo()

        async def started_again() -> bool:
            return s.poster._writer is not None

        await eventually(started_again)
        after = await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="after")
        assert after.content == "after"


def test_the_posters_process_loads_no_sqlalchemy() -> None:
    """It speaks to asyncpg alone: SQLAlchemy would be about 23 MB of its memory."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, atomchat_server.poster_process;"
            " print(sorted(m for m in sys.modules if m.partition('.')[0] == 'sqlalchemy'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert loaded.strip() == "[]"


async def test_the_posters_process_runs_this_installations_code_wherever_it_is_started(
    postgres_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started from inside another checkout still starts its own poster:
    `python -m` would import that checkout's package from the working directory."""
    other = tmp_path / "atomchat_server"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "__main__.py").write_text("raise SystemExit('another checkout')\n")
    (other / "poster_process.py").write_text("raise SystemExit('another checkout')\n")
    monkeypatch.chdir(tmp_path)
    async with poster_on(postgres_server_url) as s:
        message = await s.poster.submit(actor=s.actor, channel_id=s.channel_id, content="here")
        assert message.content == "here"
