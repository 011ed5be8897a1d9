"""What the search indexes' pending lists cost a commit of posts:
`python -m bench.pending_lists [--mode inserts|merger|off] [--words 14] ...`.

Batches of messages go into a fresh migrated database at a fixed rate (0:
flat out), one transaction each, as the poster's inserts do, and each
transaction is timed. `inserts`: the GIN indexes' pending lists are merged
by whichever insert makes them outgrow gin_pending_list_limit (PostgreSQL's
default); `merger`: by the server's PendingListMerger on a connection of its
own (db/index_upkeep.py); `off`: there are none (fastupdate = off). Content
is `--words` words from a vocabulary of 5,000, or, with 0, the benchmark's
own text (one long token).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import asyncpg

from atomchat_server.db.engine import asyncpg_dsn
from atomchat_server.db.index_upkeep import INTERVAL_SECONDS, PendingListMerger
from bench.database import server_url
from devsupport import fresh_database

CHANNELS = 200
SLOW_SECONDS = 0.03
_INSERT = (
    "INSERT INTO messages (channel_id, seq, sender_id, content)"
    " SELECT c, s, 1, body FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS v(c, s, body)"
)
_GIN_INDEXES = ("ix_messages_search", "ix_messages_search_pairs")


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pending_lists", description=__doc__)
    parser.add_argument("--mode", choices=("inserts", "merger", "off"), default="merger")
    parser.add_argument("--rate", type=float, default=2000.0, help="rows/s (0: flat out)")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--batch", type=int, default=20, help="rows per transaction")
    parser.add_argument("--words", type=int, default=14, help="words a message (0: bench text)")
    parser.add_argument(
        "--interval", type=float, default=INTERVAL_SECONDS, help="the merger's, seconds"
    )
    return parser.parse_args()


class Content:
    def __init__(self, words: int) -> None:
        self._words = words
        self._rng = random.Random(1)
        self._vocabulary = [f"w{number}a" for number in range(5000)]

    def next(self, channel_id: int, number: int) -> str:
        if self._words:
            return " ".join(self._rng.choices(self._vocabulary, k=self._words))
        return f"{channel_id:08d}{time.time_ns():020d}{1:04d}{number:09d}" + "x" * 59


async def _prepare(connection: asyncpg.Connection, mode: str) -> None:
    await connection.execute(
        "INSERT INTO users (id, username, username_key, hashed_password)"
        " VALUES (1, 'writer', 'writer', 'x')"
    )
    await connection.execute(
        "INSERT INTO channels (id, name, slug)"
        " SELECT g, 'c' || g, 'c' || g FROM generate_series(1, $1::int) AS g",
        CHANNELS,
    )
    if mode == "off":
        for index in _GIN_INDEXES:
            await connection.execute(f"ALTER INDEX {index} SET (fastupdate = off)")


async def _run(options: argparse.Namespace, dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    merger = PendingListMerger(dsn, interval=options.interval) if options.mode == "merger" else None
    try:
        await _prepare(connection, options.mode)
        if merger is not None:
            merger.start()
        content = Content(options.words)
        seqs = [0] * (CHANNELS + 1)
        number = 0
        times: list[float] = []
        start = time.perf_counter()
        due = start
        while time.perf_counter() - start < options.seconds:
            channels, numbers, bodies = [], [], []
            for _ in range(options.batch):
                number += 1
                channel_id = 1 + number % CHANNELS
                seqs[channel_id] += 1
                channels.append(channel_id)
                numbers.append(seqs[channel_id])
                bodies.append(content.next(channel_id, number))
            began = time.perf_counter()
            async with connection.transaction():
                await connection.execute(_INSERT, channels, numbers, bodies)
            times.append(time.perf_counter() - began)
            if merger is not None:
                merger.note_writes()
            if options.rate:
                due += options.batch / options.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        elapsed = time.perf_counter() - start
    finally:
        if merger is not None:
            await merger.close()
        await connection.close()
    _report(options, times, number / elapsed, merger)


def _report(
    options: argparse.Namespace,
    times: list[float],
    rows_per_second: float,
    merger: PendingListMerger | None,
) -> None:
    ordered = sorted(times)

    def ms(fraction: float) -> str:
        return f"{ordered[round(fraction * (len(ordered) - 1))] * 1000:.1f}"

    slow = sum(t > SLOW_SECONDS for t in times)
    merges = f", {merger.merges} merges of {merger.pages} pages" if merger is not None else ""
    print(
        f"{options.mode}: {rows_per_second:,.0f} rows/s, {len(times)} commits of"
        f" {options.batch}: p50 {ms(0.5)} ms, p99 {ms(0.99)}, p99.9 {ms(0.999)},"
        f" max {ordered[-1] * 1000:.1f}; {slow} over {SLOW_SECONDS * 1000:.0f} ms{merges}"
    )


async def _main() -> None:
    options = _options()
    async with fresh_database(server_url()) as url:
        await _run(options, asyncpg_dsn(url))


if __name__ == "__main__":
    asyncio.run(_main())
