"""The server's own histograms over a measurement window (SPEC §11).

The server under test serves Prometheus metrics; the orchestrator reads them
as the generator's window opens and as it closes, and the difference of the
two scrapes is what the server observed inside the window:

    atomchat_commit_seconds         one group commit's transaction, begin to COMMIT
    atomchat_fanout_delay_seconds   a message's row time (its transaction's now()) to
                                    the fan-out round that queues it to its streams;
                                    once per round, for the round's oldest message
    atomchat_post_batch_size        posts per group commit
    atomchat_fanout_messages_total and atomchat_fanout_message_delay_seconds_total
                                    every posted message's delay to its round, summed

Quantiles are interpolated linearly inside a bucket, as Prometheus'
histogram_quantile does, so they are only as fine as the buckets; means
(sum / count) are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

COMMIT = "atomchat_commit_seconds"
FANOUT = "atomchat_fanout_delay_seconds"
BATCH = "atomchat_post_batch_size"
# The stage each histogram gives (bench/job.py Result.stages), its unit's factor, and
# the least value it can observe (a batch holds one post at least).
STAGES = {
    COMMIT: ("commit", 1000.0, 0.0),
    FANOUT: ("row_fanout", 1000.0, 0.0),
    BATCH: ("batch_size", 1.0, 1.0),
}
# Every posted message's fan-out delay (counters: a mean per message, where the
# histogram gives each round's oldest): the stage "row_fanout_each", n and mean only.
FANOUT_MESSAGES = "atomchat_fanout_messages"
FANOUT_MESSAGE_DELAY = "atomchat_fanout_message_delay_seconds"
SCRAPE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Histogram:
    """One unlabelled histogram: cumulative counts by upper bound (the last +Inf)."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed since `earlier` (a scrape of the same histogram)."""
        before = dict(earlier.buckets)
        return Histogram(
            tuple((bound, count - before.get(bound, 0.0)) for bound, count in self.buckets),
            self.total - earlier.total,
            self.count - earlier.count,
        )

    def quantile(self, fraction: float, least: float = 0.0) -> float:
        """Linear interpolation inside the bucket the rank falls in (histogram_quantile),
        the first bucket from `least`; the highest finite bound if it falls in +Inf; 0
        without observations."""
        if self.count <= 0 or not self.buckets:
            return 0.0
        rank = fraction * self.count
        lower, below = least, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank and cumulative > below:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - below) / (cumulative - below)
            lower, below = bound, cumulative
        return lower

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else 0.0

    def summary(self, factor: float = 1.0, least: float = 0.0) -> dict[str, float]:
        """n, p50, p99 and mean, the values multiplied by `factor` (1000: seconds to ms)."""
        return {
            "n": int(self.count),
            "p50": round(self.quantile(0.50, least) * factor, 3),
            "p99": round(self.quantile(0.99, least) * factor, 3),
            "mean": round(self.mean * factor, 3),
        }


@dataclass(frozen=True, slots=True)
class Scrape:
    histograms: dict[str, Histogram]
    # Unlabelled counters by family name (without _total).
    counters: dict[str, float]


def parse(text: str, names: tuple[str, ...] = tuple(STAGES)) -> Scrape:
    """The unlabelled histograms `names` and every unlabelled counter of a Prometheus
    text exposition."""
    found: dict[str, Histogram] = {}
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            for sample in family.samples:
                if sample.name.endswith("_total") and not sample.labels:
                    counters[family.name] = sample.value
            continue
        if family.type != "histogram" or family.name not in names:
            continue
        buckets: list[tuple[float, float]] = []
        total = count = 0.0
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
        found[family.name] = Histogram(tuple(sorted(buckets)), total, count)
    return Scrape(found, counters)


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT)
    response.raise_for_status()
    return parse(response.text)


class WindowScrapes:
    """Scrapes at the opening and at the close of one measurement window."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.before: Scrape | None = None
        self.after: Scrape | None = None
        # Why a scrape failed (the run goes on without the server's figures).
        self.error = ""

    async def opened(self) -> None:
        self.before = await self._scrape()

    async def closed(self) -> None:
        self.after = await self._scrape()

    async def _scrape(self) -> Scrape | None:
        try:
            return await scrape(self.port)
        except (httpx.HTTPError, ValueError) as error:
            self.error = self.error or f"metrics scrape failed: {error}"
            return None

    def stages(self) -> dict[str, dict[str, float]]:
        """Each histogram's window as a stage summary; none unless both scrapes were made."""
        if self.before is None or self.after is None:
            return {}
        before, after = self.before, self.after
        stages: dict[str, dict[str, float]] = {}
        for name, (stage, factor, least) in STAGES.items():
            if name in after.histograms and name in before.histograms:
                window = after.histograms[name].minus(before.histograms[name])
                stages[stage] = window.summary(factor, least)
        names = (FANOUT_MESSAGES, FANOUT_MESSAGE_DELAY)
        if all(name in after.counters and name in before.counters for name in names):
            count = after.counters[FANOUT_MESSAGES] - before.counters[FANOUT_MESSAGES]
            delay = after.counters[FANOUT_MESSAGE_DELAY] - before.counters[FANOUT_MESSAGE_DELAY]
            mean = delay / count * 1000.0 if count > 0 else 0.0
            stages["row_fanout_each"] = {"n": int(count), "mean": round(mean, 3)}
        return stages
