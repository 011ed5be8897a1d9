"""bench/server_metrics.py: a window's histogram is the difference of two scrapes,
and its quantiles are interpolated inside buckets as Prometheus' histogram_quantile
does."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client import Histogram as PrometheusHistogram

from bench import stats
from bench.server_metrics import COMMIT, FANOUT, Histogram, parse

INF = math.inf


def test_quantiles_interpolate_inside_the_bucket_the_rank_falls_in() -> None:
    # 4 observations up to 1, 8 in (1, 2], 8 in (2, 5].
    histogram = Histogram(((1.0, 4.0), (2.0, 12.0), (5.0, 20.0), (INF, 20.0)), 50.0, 20.0)
    assert histogram.quantile(0.10) == pytest.approx(0.5)  # rank 2 of the first 4, from 0
    assert histogram.quantile(0.25) == pytest.approx(1.125)  # rank 5: 1 of 8 into (1, 2]
    assert histogram.quantile(0.50) == pytest.approx(1.75)  # rank 10: 6 of 8 into (1, 2]
    assert histogram.quantile(0.99) == pytest.approx(4.925)  # rank 19.8: 7.8 of 8 into (2, 5]
    assert histogram.mean == pytest.approx(2.5)
    assert histogram.summary(1000.0) == {"n": 20, "p50": 1750.0, "p99": 4925.0, "mean": 2500.0}


def test_a_rank_beyond_the_last_finite_bound_is_that_bound() -> None:
    histogram = Histogram(((1.0, 1.0), (2.0, 1.0), (INF, 3.0)), 10.0, 3.0)
    assert histogram.quantile(0.99) == 2.0
    assert histogram.quantile(0.2) == pytest.approx(0.6)


def test_empty_buckets_before_the_rank_are_skipped() -> None:
    histogram = Histogram(((1.0, 0.0), (2.0, 0.0), (4.0, 2.0), (INF, 2.0)), 6.0, 2.0)
    assert histogram.quantile(0.5) == pytest.approx(3.0)


def test_the_first_bucket_starts_at_the_least_possible_value() -> None:
    # Posts per commit: every batch held exactly one.
    batches = Histogram(((1.0, 40.0), (2.0, 40.0), (INF, 40.0)), 40.0, 40.0)
    assert batches.quantile(0.5) == pytest.approx(0.5)  # from 0, as histogram_quantile
    assert batches.quantile(0.5, least=1.0) == 1.0
    assert batches.summary(least=1.0) == {"n": 40, "p50": 1.0, "p99": 1.0, "mean": 1.0}


def test_no_observations_give_zeros() -> None:
    empty = Histogram(((1.0, 0.0), (INF, 0.0)), 0.0, 0.0)
    assert empty.quantile(0.5) == 0.0
    assert empty.summary(1000.0) == {"n": 0, "p50": 0.0, "p99": 0.0, "mean": 0.0}


def test_the_window_is_the_difference_of_two_scrapes() -> None:
    registry = CollectorRegistry()
    commit = PrometheusHistogram(COMMIT, "commits", registry=registry, buckets=(0.01, 0.1))
    for seconds in (0.005, 0.005, 0.05):
        commit.observe(seconds)
    before = parse(generate_latest(registry).decode()).histograms
    for seconds in (0.02, 0.04, 0.06, 0.08, 0.2):
        commit.observe(seconds)
    after = parse(generate_latest(registry).decode()).histograms
    assert set(before) == set(after) == {COMMIT}  # the fan-out histogram was never exported
    window = after[COMMIT].minus(before[COMMIT])
    assert window.buckets == ((0.01, 0.0), (0.1, 4.0), (INF, 5.0))
    assert window.count == 5
    assert window.total == pytest.approx(0.4)
    # rank 2.5 of 4 in (0.01, 0.1]
    assert window.quantile(0.5) == pytest.approx(0.01 + 0.09 * 2.5 / 4)
    assert FANOUT not in after


def test_a_stage_of_the_generator_is_in_milliseconds() -> None:
    ordered = sorted(n * 1_000_000 for n in range(1, 101))  # 1..100 ms
    assert stats.stage(ordered) == {"n": 100, "p50": 50.0, "p99": 99.0, "mean": 50.5}
    assert stats.stage([])["n"] == 0


def test_counters_are_read_by_family_name() -> None:
    registry = CollectorRegistry()
    messages = Counter("atomchat_fanout_messages", "messages", registry=registry)
    messages.inc(7)
    scrape = parse(generate_latest(registry).decode())
    assert scrape.counters == {"atomchat_fanout_messages": 7.0}
    assert scrape.histograms == {}
