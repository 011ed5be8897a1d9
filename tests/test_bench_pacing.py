"""The rate of the benchmark's paced runs: half of what the flat-out run sustained,
in messages delivered, or in sends acked where every stream sends."""

from __future__ import annotations

from typing import cast

import pytest

from bench.__main__ import _options as bench_options
from bench.database import BenchDatabase
from bench.job import Result
from bench.scenarios import SCENARIOS, Scenario
from bench.suite import ATOMCHAT, FLAT, PACED, Suite, paced_rate
from devsupport import Server


def test_a_fan_out_shape_is_paced_at_half_the_messages_delivered() -> None:
    # s100: 100 copies of each message; 2000 messages delivered a second.
    flat = Result(seconds=2.0, copies=400_000, messages=4000.0, acks=5000)
    assert paced_rate(SCENARIOS["s100"], flat) == 1000.0


def test_where_every_stream_sends_the_pace_is_half_the_sends_acked() -> None:
    """Flat out, copies lagged behind the acks (2500 delivered, 8000 acked a
    second): pacing at half the copies ran at a sixth of what posting sustained."""
    flat = Result(seconds=1.0, copies=2500, messages=2500.0, acks=8000)
    assert paced_rate(SCENARIOS["in200x1"], flat) == 8000 / 200 / 2


async def test_a_flood_of_posts_whose_copies_lag_past_the_window_is_paced_all_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flat out, 200 × 1 acked 5,000 sends a second while none of their copies
    arrived inside the window: the paced run (its ack p99 is the issue's figure)
    is still made, at half the sends acked, where it used to be skipped."""
    options = bench_options(["--scenarios=in200x1", "--modes=64", "--timeline-share=0"])
    suite = Suite(options, cast(BenchDatabase, None), [])
    asked: list[tuple[str, float | None]] = []

    async def run(
        server: Server,
        scenario: Scenario,
        target: str,
        max_batch: int,
        *,
        kind: str,
        rate: float | None,
    ) -> Result:
        asked.append((kind, rate))
        return Result(seconds=1.0, copies=0, messages=0.0, acks=5000)

    monkeypatch.setattr(suite, "_run", run)
    await suite._modes(cast(Server, None), SCENARIOS["in200x1"], ATOMCHAT, 64)
    assert asked == [(FLAT, None), (PACED, 5000 / 200 / 2)]


def test_a_flat_run_that_failed_or_sustained_nothing_is_not_paced() -> None:
    assert paced_rate(SCENARIOS["s100"], Result(seconds=1.0, acks=10)) is None
    assert paced_rate(SCENARIOS["in200x1"], Result(seconds=1.0, messages=4.0)) is None
    failed = Result(seconds=1.0, copies=400, messages=4.0, acks=4, failure="a stream ended")
    assert paced_rate(SCENARIOS["s100"], failed) is None
