"""py-spy on the server under load: a flame graph, raw stacks, a dump, and the hot spots."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from devsupport import tool

_LINE = re.compile(r":\d+\)$")
# Leaf frames of a thread that waits: with native frames py-spy samples them
# as running, so they are left out of the shares.
# A thread blocked on a lock or a queue (an idle worker thread) waits too.
BLOCKED = "PyThread_acquire_lock_timed ("
WAITING = (
    "epoll_wait (",
    "epoll_pwait (",
    "poll (",
    "pthread_cond_wait (",
    "pthread_cond_timedwait (",
)


@dataclass(frozen=True, slots=True)
class HotSpot:
    function: str
    own: float
    total: float


async def _py_spy(*args: str, output: Path | None = None) -> None:
    with (output or Path("/dev/null")).open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            tool("py-spy"), *args, stdout=sink, stderr=asyncio.subprocess.STDOUT
        )
        await process.wait()


async def record(pid: int, folder: Path, label: str, seconds: float) -> list[HotSpot]:
    """Raw stacks for `seconds`, then a flame graph for as long; returns the hot spots.

    Native frames are included: most of a copy's cost is inside grpc's C
    core and the system calls it makes, which Python frames alone would hide.
    """
    raw = folder / f"profile-{label}.txt"
    common = ["--pid", str(pid), "--duration", str(max(1, round(seconds))), "--native"]
    await _py_spy("record", *common, "--format", "raw", "--output", str(raw))
    await _py_spy("dump", "--pid", str(pid), output=folder / f"dump-{label}.txt")
    await _py_spy("record", *common, "--output", str(folder / f"profile-{label}.svg"))
    return hot_spots(raw.read_text())


def _function(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def hot_spots(collapsed: str, top: int = 15, code: str = "(atomchat_server/") -> list[HotSpot]:
    """Functions by share of busy samples: as the running frame (own) and anywhere on the stack.

    The `top` functions by own share come first, then the `top` functions of
    `code` (the server's own modules) by total share.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        if frames[-1].startswith(WAITING) or any(f.startswith(BLOCKED) for f in frames):
            continue
        samples += count
        own[frames[-1]] += count
        for function in set(frames):
            total[function] += count
    if not samples:
        return []
    ranked = [name for name, _ in own.most_common(top)]
    ours = [name for name, _ in total.most_common() if code in name and name not in ranked]
    ranked += ours[:top]
    return [
        HotSpot(name, 100.0 * own[name] / samples, 100.0 * total[name] / samples) for name in ranked
    ]
