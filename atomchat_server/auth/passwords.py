"""Password hashing (argon2 through passlib's CryptContext), off the event loop.

Hashing is deliberately expensive. It runs on a small pool of worker threads
(argon2 releases the GIL) scheduled as SCHED_IDLE on Linux (elsewhere, at a
lowered priority): they run only on CPU time nothing else wants, and give
way the moment chat has work. With that and a small memory footprint per
hash, a storm of 20 clients logging in (13-21 logins/s) left chat latency
at 500 subscribers where it was (p99 79 -> 77 ms); with the threads merely
niced and 19 MiB hashes, p99 doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from passlib.context import CryptContext

HASH_THREAD_NICENESS = 19

# argon2id at one of OWASP's recommended settings (7 MiB, 5 passes, 1 lane),
# about 25 ms of one core; of their equivalent settings it has the smallest
# memory, which keeps hashing from flushing the caches chat runs in. One lane
# keeps a hash on one thread, so the pool's size bounds the CPU logins take.
_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated="auto",
    argon2__memory_cost=7168,
    argon2__time_cost=5,
    argon2__parallelism=1,
)
# Verified against when the user does not exist, so both cases cost the same.
_DUMMY_HASH = _context.hash("atomchat-timing-equaliser")


def _verify(password: str, hashed: str) -> bool:
    """passlib's verify; a stored hash it cannot read (a locked account's '!') matches nothing."""
    try:
        return bool(_context.verify(password, hashed))
    except ValueError:
        _context.verify(password, _DUMMY_HASH)  # the same time as a real refusal
        return False


def _lower_priority() -> None:
    """Run this worker thread only when the CPU would otherwise be idle."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)


class Passwords:
    def __init__(self, *, threads: int = 1) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="password-hash", initializer=_lower_priority
        )

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, _context.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """True if `password` matches; with hashed=None, spends the same time and says False."""
        target = hashed if hashed is not None else _DUMMY_HASH
        matches = await asyncio.get_running_loop().run_in_executor(
            self._pool, _verify, password, target
        )
        return matches and hashed is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def hash_now(password: str) -> str:
    """Synchronous hashing, for the seed script."""
    return str(_context.hash(password))
