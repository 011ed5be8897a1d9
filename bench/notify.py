"""`python -m bench.notify`: how many commits a second PostgreSQL takes when each
issues a NOTIFY, against the same commits without one.

Every replica's poster commits its batches with one NOTIFY per channel, and
PostgreSQL serialises the commits of all transactions that notified
(through one lock on the one notification queue, shared by every database
of the server): this is the ceiling that more replicas on one PostgreSQL
share. C connections each commit an insert (and a pg_notify of a 200-byte
payload, one LISTEN connection receiving them all) as fast as they can.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from bench.database import server_url
from devsupport import admin_dsn, fresh_database

PAYLOAD = "x" * 200
TABLE = "CREATE TABLE bench_notify (id bigserial PRIMARY KEY, body text NOT NULL)"
INSERT = "INSERT INTO bench_notify (body) VALUES ($1)"
NOTIFY = "SELECT pg_notify('bench_notify', $1)"


async def committer(url: str, *, notify: bool, until: float) -> int:
    connection = await asyncpg.connect(url)
    commits = 0
    try:
        while time.perf_counter() < until:
            async with connection.transaction():
                await connection.execute(INSERT, PAYLOAD)
                if notify:
                    await connection.execute(NOTIFY, PAYLOAD)
            commits += 1
    finally:
        await connection.close()
    return commits


async def measure(url: str, connections: int, *, notify: bool, seconds: float) -> float:
    heard = 0

    def count(*_: object) -> None:
        nonlocal heard
        heard += 1

    listener = await asyncpg.connect(url)
    await listener.add_listener("bench_notify", count)
    try:
        until = time.perf_counter() + seconds
        done = await asyncio.gather(
            *(committer(url, notify=notify, until=until) for _ in range(connections))
        )
    finally:
        await listener.close()
    return sum(done) / seconds


async def main_async(options: argparse.Namespace) -> None:
    print("| connections | commits/s without NOTIFY | commits/s with NOTIFY |")
    print("|---:|---:|---:|")
    async with fresh_database(server_url(), migrated=False, prefix="atomchat_bench") as url:
        setup = await asyncpg.connect(admin_dsn(url))
        try:
            await setup.execute(TABLE)
        finally:
            await setup.close()
        for connections in options.connections:
            plain = await measure(url, connections, notify=False, seconds=options.seconds)
            notified = await measure(url, connections, notify=True, seconds=options.seconds)
            print(f"| {connections} | {plain:,.0f} | {notified:,.0f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.notify", description="commits/s with and without NOTIFY"
    )
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 2, 8],
        help="committing connections, one run each (1,2,8)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each run's length (5)")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
