"""The benchmark's soak, run very short: it reports every interval, and loses and
duplicates nothing (bench/soak.py; the real one runs for 30 minutes)."""

from __future__ import annotations

import sys

import pytest

from devsupport import child_environment, run


async def test_a_short_soak_reports_every_interval_and_loses_nothing(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    results = tmp_path_factory.mktemp("bench")
    completed = await run(
        sys.executable,
        "-m",
        "bench",
        "--soak",
        "--soak-scenario=s10",
        "--soak-minutes=0.05",
        "--soak-interval=1",
        # A rate of its own: no flat-out run first.
        "--soak-rate=50",
        "--warmup=0.5",
        "--quiet-cpu=100",
        f"--results={results}",
        env=child_environment(DATABASE_URL=postgres_server_url),
        timeout=110,
        merge_output=True,
    )
    assert completed.returncode == 0, completed.output
    soak = completed.output[completed.output.index("Soak: ") :]
    rows = [line.split() for line in soak.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) >= 2, soak
    assert "loss 0, duplicates 0, leaks 0" in soak
