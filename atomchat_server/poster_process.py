"""The poster: the timeline's writes, committed by a process of its own.

`MessagePoster` is the server's side. It checks each write as far as it can
without the database, gives it a ticket and a future, and sends it to the
poster's process over a socket pair; whatever is submitted during one turn
of the server's loop crosses as one frame. The poster's process (`main`,
`python -m atomchat_server.poster_process FD`) runs the domain's
TimelineWriter (domain/posting.py): the group committer's lanes, their
connections and the batches' rules. For each batch it sends back, in one
frame, what the batch committed (handed out by `on_commit`, on the server's
loop) and then each write's answer, which settles its future.

Why a process: a batch is four round trips to PostgreSQL, and each costs
the committer's thread the interpreter lock three times on asyncio's loop.
In the server's process that lock is held by the fan-out and the streams'
writes most of the time: the committer's thread waited for it 57-60% of its
time under load (bench/README.md), and the server's loop waited behind the
thread in turn. The poster's process has its own interpreter, and the
operating system shares the cores between the two.

Frames are a 4-byte length and a pickle. The first one, from the server,
is the poster's configuration; the poster answers it with READY. A poster
that dies (killed, or out of memory) fails the writes it held with
UNAVAILABLE (a write that was on its way to COMMIT may have committed all
the same, as when the database fails: clients retry with their
client_message_id), tells `on_unavailable`, and is started again a second
later; what is submitted while it cannot be started fails after the next
attempt. Closing ends the server's side of the socket: the poster commits
what it holds, answers, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from atomchat_server.children import die_with_parent, python_module
from atomchat_server.db.group_commit import OnCommit
from atomchat_server.db.timeouts import Timeouts
from atomchat_server.domain import errors
from atomchat_server.domain.entities import Actor, MessageView
from atomchat_server.domain.posting import (
    MAX_BATCH,
    Change,
    Outcome,
    TimelineWriter,
    Work,
    new_change,
    new_post,
)
from atomchat_server.observability import logs, metrics

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
READY = "ready"
# What the poster's process sends, each entry a tuple led by its kind:
COMMITTED = "committed"  # (COMMITTED, events): a batch committed these; hand them out
REPLY = "reply"  # (REPLY, ticket, outcome)
OBSERVED = "observed"  # (OBSERVED, items, seconds): a batch written (the commit metric)
UNAVAILABLE = "unavailable"  # (UNAVAILABLE,): a batch found the database unavailable
# A poster that died is started again after this long.
RESTART_SECONDS = 1.0
# How long a poster may take to start, and to write what it holds when closed.
START_SECONDS = 30.0
CLOSE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PosterConfig:
    dsn: str
    origin: str
    max_batch: int
    timeouts: Timeouts | None
    log_level: str
    log_format: str


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's value; None at the end of the stream."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        return pickle.loads(await reader.readexactly(length))  # noqa: S301 - our own child
    except asyncio.IncompleteReadError:
        return None


class MessagePoster:
    """The server's side of the poster; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_commit: OnCommit,
        max_batch: int = MAX_BATCH,
        timeouts: Timeouts | None = None,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self._config = PosterConfig(dsn, origin, max_batch, timeouts, *logs.current())
        self._on_commit = on_commit
        self._on_unavailable = on_unavailable
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[MessageView]] = {}
        self._ticket = 0
        # Submitted this turn of the loop, sent at its end as one frame.
        self._outgoing: list[Work] = []
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the poster's process; returns once it is ready for work."""
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def close(self) -> None:
        """Let the poster commit what it holds and answer, then stop it."""
        self._closing = True
        self._flush()
        if self._writer is not None and self._writer.can_write_eof():
            self._writer.write_eof()
        if self._reading is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reading), CLOSE_SECONDS)
            except TimeoutError:
                log.error("the poster did not finish within %.0f s; killing it", CLOSE_SECONDS)
        await self._stop_process()
        self._fail_pending(errors.shutting_down())

    def submit(
        self,
        *,
        actor: Actor,
        channel_id: int,
        content: str,
        client_message_id: str = "",
        reply_to_id: int = 0,
    ) -> asyncio.Future[MessageView]:
        """Queue a post; invalid content fails at once, the rest when the batch commits:
        the stored message, or the original of a repeat.

        Writes are committed in the order they were submitted.
        """
        ticket = self._next_ticket()
        work = new_post(
            ticket,
            actor=actor,
            channel_id=channel_id,
            content=content,
            client_message_id=client_message_id,
            reply_to_id=reply_to_id,
        )
        return self._send(work)

    async def change(
        self, *, actor: Actor, channel_id: int, message_id: int, change: Change, value: str = ""
    ) -> MessageView:
        """Edit (value: the content), delete, react or unreact (value: the emoji);
        the message's state once committed."""
        ticket = self._next_ticket()
        work = new_change(
            ticket,
            actor=actor,
            channel_id=channel_id,
            message_id=message_id,
            change=change,
            value=value,
        )
        return await self._send(work)

    def _next_ticket(self) -> int:
        if self._closing or self._loop is None:
            raise errors.shutting_down()
        self._ticket += 1
        return self._ticket

    def _send(self, work: Work) -> asyncio.Future[MessageView]:
        loop = self._loop
        if loop is None:
            raise errors.shutting_down()
        future = loop.create_future()
        self._pending[work.ticket] = future
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(work)
        return future

    def _flush(self) -> None:
        """Send what this turn of the loop submitted, once the poster is there to take it."""
        if self._outgoing and self._writer is not None:
            self._writer.write(_frame(self._outgoing))
            self._outgoing = []

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *python_module(__name__, str(theirs.fileno())),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent(os.getpid()),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(_frame(self._config))
        try:
            ready = await asyncio.wait_for(_read_frame(reader), START_SECONDS)
        except TimeoutError:
            ready = None
        if ready != READY:
            writer.close()
            await self._stop_process()
            raise RuntimeError("the poster's process did not start")
        self._writer = writer
        self._reading = asyncio.create_task(self._read(reader), name="poster answers")
        self._flush()
        if self._closing:
            # Closed while this poster started (again): it is to end at once.
            writer.write_eof()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Take the poster's frames until it ends; start it again if it ended unasked."""
        try:
            while (entries := await _read_frame(reader)) is not None:
                self._take(entries)
        except (OSError, pickle.UnpicklingError):
            log.exception("reading the poster's answers failed")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._closing:
            return
        log.error("the poster's process ended; failing the %d writes it held", len(self._pending))
        self._fail_pending(errors.database_unavailable())
        if self._on_unavailable is not None:
            self._on_unavailable()
        await self._stop_process(grace=0)
        while not self._closing:
            await asyncio.sleep(RESTART_SECONDS)
            if self._closing:
                return
            try:
                await self._spawn()
            except (OSError, RuntimeError):
                log.exception("could not start the poster again")
                # What was submitted meanwhile waits no longer than one attempt.
                self._fail_pending(errors.database_unavailable())
            else:
                return

    def _take(self, entries: Sequence[tuple[Any, ...]]) -> None:
        pending = self._pending
        for entry in entries:
            kind = entry[0]
            if kind == REPLY:
                future = pending.pop(entry[1], None)
                if future is not None and not future.done():
                    outcome = entry[2]
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
            elif kind == COMMITTED:
                try:
                    self._on_commit(entry[1])
                except Exception:
                    # The writes committed all the same: answer them.
                    log.exception("handing out a batch failed")
            elif kind == OBSERVED:
                metrics.observe_commit(entry[1], entry[2])
            elif kind == UNAVAILABLE and self._on_unavailable is not None:
                self._on_unavailable()

    def _fail_pending(self, error: errors.DomainError) -> None:
        pending, self._pending = self._pending, {}
        self._outgoing = []
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    async def _stop_process(self, grace: float = CLOSE_SECONDS) -> None:
        """Wait for the poster's process to end, killing it after `grace` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class _Outbox:
    """The poster's side: entries for the server, sent once per turn of its loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._entries: list[tuple[object, ...]] = []

    def committed(self, emitted: Sequence[object]) -> None:
        self._add((COMMITTED, list(emitted)))

    def reply(self, ticket: int, outcome: Outcome) -> None:
        if isinstance(outcome, BaseException) and not isinstance(outcome, errors.DomainError):
            # The server answers INTERNAL for it; the details stay in this log.
            log.error("a write failed: %r", outcome)
            outcome = RuntimeError("the poster failed")
        self._add((REPLY, ticket, outcome))

    def observed(self, items: int, seconds: float) -> None:
        self._add((OBSERVED, items, seconds))

    def unavailable(self) -> None:
        self._add((UNAVAILABLE,))

    def send(self, value: object) -> None:
        self._writer.write(_frame(value))

    def flush(self) -> None:
        if self._entries:
            self.send(self._entries)
            self._entries = []

    def _add(self, entry: tuple[object, ...]) -> None:
        if not self._entries:
            self._loop.call_soon(self.flush)
        self._entries.append(entry)


async def _serve(fd: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    config: PosterConfig = await _read_frame(reader)
    logs.configure(config.log_level, config.log_format)
    outbox = _Outbox(writer)
    timeline = TimelineWriter(
        config.dsn,
        origin=config.origin,
        on_commit=outbox.committed,
        reply=outbox.reply,
        max_batch=config.max_batch,
        timeouts=config.timeouts,
        on_unavailable=outbox.unavailable,
        observe=outbox.observed,
    )
    timeline.start()
    outbox.send(READY)
    try:
        while (works := await _read_frame(reader)) is not None:
            for work in works:
                timeline.submit(work)
    finally:
        await timeline.close()
        # The last batches' answers were queued on this loop before the committer ended.
        await asyncio.sleep(0)
        outbox.flush()
        await writer.drain()
        writer.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The poster's process: serve the server on the socket whose descriptor is argv[0]."""
    (fd,) = argv if argv is not None else sys.argv[1:]
    # The server decides when the poster stops: Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(int(fd)))


if __name__ == "__main__":
    main()
