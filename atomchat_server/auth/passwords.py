"""Password hashing (argon2 through passlib's CryptContext), off the event loop.

Hashing is deliberately expensive. It runs on a small pool of worker threads
(argon2 releases the GIL) whose scheduling priority is lowered, so a storm
of logins takes the CPU only when live chat does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from passlib.context import CryptContext

HASH_THREAD_NICENESS = 10

# argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about
# 50 ms of one core. One lane keeps a hash on one thread, so the pool's size
# bounds the CPU that logins can take.
_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated="auto",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
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
