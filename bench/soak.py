"""The soak: chat at half the measured maximum for a long time, watched every interval.

The load generator runs one long paced window and reports each interval
(copies/s and latency percentiles of that interval alone, bench/loadgen.py);
at each report the orchestrator samples the server process: its RSS, its
open file descriptors, and the database connections of the benchmark's
database (by application name). Flat after the warm-up, and 0 lost or
duplicated at the end, is what a healthy server shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psutil

from bench.job import Result

_CONNECTIONS = (
    "SELECT coalesce(application_name, '') AS name, count(*) AS n FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1"
)


@dataclass(frozen=True, slots=True)
class Sample:
    rss_mib: float
    open_files: int
    # Database connections by application name.
    connections: dict[str, int]

    @property
    def connection_count(self) -> int:
        return sum(self.connections.values())


class Sampler:
    """The server process and the benchmark database, sampled on demand."""

    def __init__(self, server_pid: int, database_url: str) -> None:
        self._process = psutil.Process(server_pid)
        self._url = database_url

    async def sample(self) -> Sample:
        connection = await asyncpg.connect(self._url)
        try:
            rows = await connection.fetch(_CONNECTIONS)
        finally:
            await connection.close()
        return Sample(
            rss_mib=self._process.memory_info().rss / (1 << 20),
            open_files=self._process.num_fds(),
            connections={row["name"]: row["n"] for row in rows},
        )


@dataclass(frozen=True, slots=True)
class SoakRow:
    interval: int
    seconds: float
    copies_per_second: float
    p50: float
    p99: float
    max: float
    send_errors: int
    streams_failed: int
    sample: Sample

    @classmethod
    def of(cls, figures: dict[str, Any], sample: Sample) -> SoakRow:
        return cls(
            interval=figures["interval"],
            seconds=figures["seconds"],
            copies_per_second=figures["copies_per_second"],
            p50=figures["p50"],
            p99=figures["p99"],
            max=figures["max"],
            send_errors=figures["send_errors"],
            streams_failed=figures["streams_failed"],
            sample=sample,
        )

    def describe(self) -> str:
        s = self.sample
        return (
            f"{self.interval:>4}  {self.copies_per_second:9.0f}  {self.p50:7.1f}  {self.p99:7.1f}"
            f"  {self.max:7.1f}  {s.rss_mib:7.1f}  {s.open_files:5d}  {s.connection_count:5d}"
            f"  {self.send_errors:6d}  {self.streams_failed:6d}"
        )


HEADER = "   #   copies/s   p50 ms   p99 ms   max ms  RSS MiB    fds  db cx  errors  failed"


@dataclass(slots=True)
class SoakFigure:
    shape: str
    max_batch: int
    # Messages per second per channel: half the flat-out rate measured first.
    rate: float
    flat_copies_per_second: float
    minutes: float
    interval_seconds: float
    before: Sample
    rows: list[SoakRow] = field(default_factory=list)
    result: Result | None = None

    def describe(self) -> str:
        lines = [
            f"Soak: {self.shape} mb={self.max_batch}, {self.minutes:g} min paced at"
            f" {self.rate:.1f} msg/s per channel (half of flat out,"
            f" {self.flat_copies_per_second:.0f} copies/s), reported every"
            f" {self.interval_seconds:g} s",
            f"  before: RSS {self.before.rss_mib:.1f} MiB, {self.before.open_files} fds,"
            f" db connections {self.before.connections}",
            "  " + HEADER,
            *("  " + row.describe() for row in self.rows),
        ]
        if len(self.rows) >= 2:
            first, last = self.rows[0].sample, self.rows[-1].sample
            lines.append(
                f"  from the first interval to the last: RSS {last.rss_mib - first.rss_mib:+.1f}"
                f" MiB, fds {last.open_files - first.open_files:+d},"
                f" db connections {last.connection_count - first.connection_count:+d}"
                f" ({last.connections})"
            )
        result = self.result
        if result is not None:
            verdict = "ok" if result.loss + result.duplicates + result.leaks == 0 else "FAILED"
            lines.append(
                f"  at the end: loss {result.loss}, duplicates {result.duplicates},"
                f" leaks {result.leaks}, send errors {result.send_errors},"
                f" unacked {result.unacked}, streams ended {result.stream_errors or 'none'}"
                f" ({verdict}){'; ' + result.failure if result.failure else ''}"
            )
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        r = self.result
        return r is not None and not r.failure and r.loss + r.duplicates + r.leaks == 0
