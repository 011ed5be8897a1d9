"""Password hashing (argon2 through passlib's CryptContext), off the event loop.

Hashing is deliberately expensive. It runs in a small pool of worker
processes scheduled as SCHED_IDLE on Linux (elsewhere, at a lowered
priority): they run only on CPU time nothing else wants, and give way the
moment chat has work. Processes rather than threads, because a hashing
thread still takes the server's GIL around every hash: an idle-priority
thread preempted while holding it stalls the event loop behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.synchronize import Semaphore
from typing import TypeVar

from passlib.context import CryptContext

from atomchat_server.domain import errors
from atomchat_server.limits import Limit
from atomchat_server.observability import metrics

HASH_PROCESS_NICENESS = 19
QUEUE_FULL_RETRY_SECONDS = 1.0
READY_POLL_SECONDS = 0.01
T = TypeVar("T")

# argon2id at one of OWASP's recommended settings (7 MiB, 5 passes, 1 lane),
# about 25 ms of one core; of their equivalent settings it has the smallest
# memory, which keeps hashing from flushing the caches chat runs in. One lane
# keeps a hash on one core, so the pool's size bounds the CPU logins take.
# argon2 is the only scheme: every stored hash is one (bcrypt's backend is not
# installed, so listing it only turned a bcrypt hash into an internal error).
_context = CryptContext(
    schemes=["argon2"],
    argon2__memory_cost=7168,
    argon2__time_cost=5,
    argon2__parallelism=1,
)
# Verified against when the user does not exist, so both cases cost the same.
_DUMMY_HASH = _context.hash("atomchat-timing-equaliser")


def _hash(password: str) -> str:
    return str(_context.hash(password))


def _verify(password: str, hashed: str) -> bool:
    """passlib's verify; a stored hash it cannot read (a locked account's '!') matches nothing."""
    try:
        return bool(_context.verify(password, hashed))
    except ValueError:
        _context.verify(password, _DUMMY_HASH)  # the same time as a real refusal
        return False


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """On Linux, have this worker killed when the server dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the server died before prctl took effect


def _start_worker(parent: int, ready: Semaphore) -> None:
    """Run this worker only when the CPU would otherwise be idle, and never past the
    server's life; Ctrl-C is the server's. Then say so through `ready`."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, 0, HASH_PROCESS_NICENESS)
    ready.release()


class Passwords:
    """Hashing and verifying in worker processes, with a bounded queue.

    At most `max_queue` hashes may be waiting or running at once (0: no
    bound); one more is refused at once with UNAVAILABLE and RetryInfo, without
    hashing, so that a flood of bogus logins cannot delay real ones by more
    than the queue's length.
    """

    def __init__(self, *, workers: int = 1, max_queue: int = 0) -> None:
        self._workers = workers
        self._max_queue = max_queue
        self._queued = 0
        spawn = multiprocessing.get_context("spawn")
        self._ready = spawn.Semaphore(0)
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=spawn,
            initializer=_start_worker,
            initargs=(os.getpid(), self._ready),
        )

    async def start(self) -> None:
        """Start every worker now and wait until each has set its priority, so that the
        first logins wait for none of them.

        One call per worker makes the pool start them all; one worker may answer
        every call while another is still starting, so readiness is counted from the
        workers' own signals. A worker that dies starting breaks the pool, and the
        next call raises.
        """
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, os.getpid) for _ in range(self._workers))
        )
        for _ in range(self._workers):
            while not self._ready.acquire(block=False):
                await loop.run_in_executor(self._pool, os.getpid)
                await asyncio.sleep(READY_POLL_SECONDS)

    def check_room(self) -> None:
        """Refuse now if the queue is full (before anything else is spent on a call)."""
        if self._max_queue and self._queued >= self._max_queue:
            metrics.count_rate_limited(Limit.HASH_QUEUE)
            raise errors.Unavailable(
                "Too many logins at once, try again",
                reason=errors.Reason.PASSWORD_QUEUE_FULL,
                retry_after=QUEUE_FULL_RETRY_SECONDS,
                quota=Limit.HASH_QUEUE,
            )

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        self.check_room()
        self._queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._queued -= 1

    async def hash(self, password: str) -> str:
        return await self._run(_hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True if `password` matches; with hashed=None, spends the same time and says False."""
        target = hashed if hashed is not None else _DUMMY_HASH
        matches = await self._run(_verify, password, target)
        return matches and hashed is not None

    async def close(self) -> None:
        """Stop the workers and wait for them to exit."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)


def hash_now(password: str) -> str:
    """Synchronous hashing, for the seed script."""
    return _hash(password)
