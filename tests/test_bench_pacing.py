"""The rate of the benchmark's paced runs: half of what the flat-out run sustained,
in messages delivered, or in sends acked where every stream sends."""

from __future__ import annotations

from bench.job import Result
from bench.scenarios import SCENARIOS
from bench.suite import paced_rate


def test_a_fan_out_shape_is_paced_at_half_the_messages_delivered() -> None:
    # s100: 100 copies of each message; 2000 messages delivered a second.
    flat = Result(seconds=2.0, copies=400_000, messages=4000.0, acks=5000)
    assert paced_rate(SCENARIOS["s100"], flat) == 1000.0


def test_where_every_stream_sends_the_pace_is_half_the_sends_acked() -> None:
    """Flat out, copies lagged behind the acks (2500 delivered, 8000 acked a
    second): pacing at half the copies ran at a sixth of what posting sustained."""
    flat = Result(seconds=1.0, copies=2500, messages=2500.0, acks=8000)
    assert paced_rate(SCENARIOS["in200x1"], flat) == 8000 / 200 / 2
