"""Runs the load generator as a child process and collects its result."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.job import Job, Result

OnMeasuring = Callable[[], Coroutine[Any, Any, None]]
OnInterval = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


async def generate(
    job: Job,
    log_path: Path,
    on_measuring: OnMeasuring | None = None,
    on_interval: OnInterval | None = None,
    on_measured: OnMeasuring | None = None,
) -> Result:
    """Run `job` in a fresh generator process; `on_measuring` starts with its window,
    `on_measured` as it closes (each as a task, awaited before the result returns),
    `on_interval` is awaited with each interval a soak job reports."""
    with log_path.open("a") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadgen",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(job.dumps().encode())
        process.stdin.close()
        result: Result | None = None
        sides: list[asyncio.Task[None]] = []
        try:
            async for raw in process.stdout:
                line = raw.decode().strip()
                if line == "measuring" and on_measuring is not None:
                    sides.append(asyncio.create_task(on_measuring()))
                elif line == "measured" and on_measured is not None:
                    sides.append(asyncio.create_task(on_measured()))
                elif line.startswith("interval ") and on_interval is not None:
                    await on_interval(json.loads(line.removeprefix("interval ")))
                elif line.startswith("result "):
                    result = Result.from_json(json.loads(line.removeprefix("result ")))
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for side in sides:
                await side
    if result is None:
        raise RuntimeError(f"the load generator failed ({process.returncode}); see {log_path}")
    return result
