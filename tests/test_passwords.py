"""Password hashing stays out of chat's way."""

from __future__ import annotations

import multiprocessing
import os

from atomchat_server.auth.passwords import Passwords

SCHED_IDLE = 5


async def test_hashing_runs_in_worker_processes_that_only_use_otherwise_idle_cpu() -> None:
    before = {child.pid for child in multiprocessing.active_children()}
    passwords = Passwords(workers=2)
    try:
        await passwords.start()
        hashed = await passwords.hash("secret-pw")
        assert await passwords.verify("secret-pw", hashed)
        assert not await passwords.verify("wrong", hashed)
        assert not await passwords.verify("secret-pw", None)
        workers = [c for c in multiprocessing.active_children() if c.pid not in before]
        assert len(workers) == 2
        for worker in workers:
            assert worker.pid is not None
            assert os.sched_getscheduler(worker.pid) == SCHED_IDLE
        assert os.sched_getscheduler(0) != SCHED_IDLE, "only the hashing processes"
    finally:
        await passwords.close()
    assert not [c for c in multiprocessing.active_children() if c.pid not in before]


async def test_start_returns_once_every_worker_runs_at_idle_priority() -> None:
    """One worker can answer every warm-up call while the others still import."""
    before = {child.pid for child in multiprocessing.active_children()}
    passwords = Passwords(workers=4)
    try:
        await passwords.start()
        workers = [c for c in multiprocessing.active_children() if c.pid not in before]
        assert len(workers) == 4
        assert [os.sched_getscheduler(w.pid or 0) for w in workers] == [SCHED_IDLE] * 4
    finally:
        await passwords.close()


async def test_hashes_use_the_small_memory_argon2id_setting() -> None:
    passwords = Passwords(workers=1)
    try:
        hashed = await passwords.hash("secret-pw")
    finally:
        await passwords.close()
    assert hashed.startswith("$argon2id$v=19$m=7168,t=5,p=1$")


async def test_an_unreadable_stored_hash_matches_nothing() -> None:
    passwords = Passwords(workers=1)
    try:
        assert not await passwords.verify("secret-pw", "!")
    finally:
        await passwords.close()


async def test_a_hash_of_a_scheme_we_do_not_use_matches_nothing() -> None:
    """Only argon2 hashes are ever stored; a bcrypt one (no bcrypt backend is
    installed) is refused like any other unreadable hash, not an internal error."""
    bcrypt_hash = "$2b$12$" + "a" * 53
    passwords = Passwords(workers=1)
    try:
        assert not await passwords.verify("secret-pw", bcrypt_hash)
    finally:
        await passwords.close()
