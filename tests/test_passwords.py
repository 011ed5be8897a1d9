"""Password hashing stays out of chat's way."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from atomchat_server.auth.passwords import Passwords

SCHED_IDLE = 5


def scheduling_policy(native_id: int) -> int:
    """Field 41 of /proc/self/task/<tid>/stat, after the parenthesised name."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[38])


async def test_hashing_threads_only_use_otherwise_idle_cpu() -> None:
    passwords = Passwords(threads=2)
    try:
        hashed = await passwords.hash("secret-pw")
        assert await passwords.verify("secret-pw", hashed)
        assert not await passwords.verify("wrong", hashed)
        workers = [t for t in threading.enumerate() if t.name.startswith("password-hash")]
        assert workers
        for worker in workers:
            assert worker.native_id is not None
            assert scheduling_policy(worker.native_id) == SCHED_IDLE
        assert os.sched_getscheduler(0) != SCHED_IDLE, "only the hashing threads"
    finally:
        passwords.close()


async def test_hashes_use_the_small_memory_argon2id_setting() -> None:
    passwords = Passwords(threads=1)
    try:
        hashed = await passwords.hash("secret-pw")
    finally:
        passwords.close()
    assert hashed.startswith("$argon2id$v=19$m=7168,t=5,p=1$")
