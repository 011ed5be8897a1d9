"""Percentiles and CPU accounting for one measurement window."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass

import psutil


def percentile(ordered: list[int], fraction: float) -> int:
    """The value below which `fraction` of the sorted samples lie (nearest rank)."""
    if not ordered:
        return 0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


# Where a latency CDF is sampled: every percent, then finer up to the maximum.
CDF_FRACTIONS = (
    *(i / 100 for i in range(1, 100)),
    *(0.99 + i / 1000 for i in range(1, 10)),
    *(0.999 + i / 10000 for i in range(1, 10)),
    1.0,
)


def cdf(ordered: list[int]) -> list[float]:
    """Sorted nanoseconds as milliseconds at CDF_FRACTIONS (empty without samples)."""
    if not ordered:
        return []
    return [round(percentile(ordered, fraction) / 1e6, 3) for fraction in CDF_FRACTIONS]


def stage(ordered: list[int]) -> dict[str, float]:
    """n, p50, p99 and mean in milliseconds of sorted nanoseconds (a stage of a message's way)."""
    if not ordered:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "mean": 0.0}
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.50) / 1e6, 3),
        "p99": round(percentile(ordered, 0.99) / 1e6, 3),
        "mean": round(sum(ordered) / len(ordered) / 1e6, 3),
    }


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds of durations in seconds, and their number."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(ordered),
    }


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (the server's password hashing workers)."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def database_backends(database: str) -> list[psutil.Process]:
    """The PostgreSQL backend processes serving `database`."""
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("postgres:") and f" {database} " in cmdline[0]:
            found.append(process)
    return found


@dataclass(slots=True)
class CpuMeter:
    """CPU used by some processes between `start` and `stop`, in percent of one core."""

    processes: list[psutil.Process]
    _started: dict[int, float] | None = None

    def _sample(self) -> dict[int, float]:
        sample: dict[int, float] = {}
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                sample[process.pid] = _cpu_seconds(process)
        return sample

    def start(self) -> None:
        self._started = self._sample()

    def percent(self, seconds: float) -> float:
        started = self._started or {}
        ended = self._sample()
        used = sum(ended[pid] - started[pid] for pid in ended if pid in started)
        return 100.0 * used / seconds if seconds > 0 else 0.0


@dataclass(slots=True)
class MachineMeter:
    """CPU used by the whole machine between `start` and `percent`, in percent of one core."""

    _started: tuple[float, float] = (0.0, 0.0)

    @staticmethod
    def _sample() -> tuple[float, float]:
        times = psutil.cpu_times()
        idle = float(times.idle + getattr(times, "iowait", 0.0))
        return float(sum(times)) - idle, idle

    def start(self) -> None:
        self._started = self._sample()

    def percent(self, seconds: float) -> float:
        busy, _ = self._sample()
        return 100.0 * (busy - self._started[0]) / seconds if seconds > 0 else 0.0


async def wait_until_quiet(limit: float, patience: float) -> float:
    """Wait until the machine's busy CPU over a second is below `limit` %; returns seconds waited.

    Gives up after `patience` seconds: the run then starts anyway, and its
    other% column tells how disturbed it was.
    """
    started = time.monotonic()
    meter = MachineMeter()
    while time.monotonic() - started < patience:
        meter.start()
        await asyncio.sleep(1.0)
        if meter.percent(1.0) < limit:
            break
    waited = time.monotonic() - started - 1.0
    return waited if waited > 0.5 else 0.0
