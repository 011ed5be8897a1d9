"""`python -m bench.pending_lists` runs end to end in each mode, and with the
merger on, the merger merges (no timing is asserted)."""

from __future__ import annotations

import re
import sys

import pytest

from devsupport import child_environment, run


@pytest.mark.parametrize("mode", ["inserts", "merger", "off"])
async def test_the_pending_lists_benchmark_runs(mode: str, postgres_server_url: str) -> None:
    done = await run(
        sys.executable,
        "-m",
        "bench.pending_lists",
        f"--mode={mode}",
        "--seconds=1",
        "--rate=400",
        "--batch=20",
        env=child_environment(DATABASE_URL=postgres_server_url),
    )
    assert done.returncode == 0, done.output
    line = done.stdout.strip()
    assert re.fullmatch(rf"{mode}: [\d,]+ rows/s, \d+ commits of 20: .*", line), line
    merges = re.search(r"(\d+) merges of (\d+) pages", line)
    if mode == "merger":
        assert merges is not None, line
        assert int(merges[1]) >= 1, line
    else:
        assert merges is None, line
