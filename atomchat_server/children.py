"""Child processes that never outlive `atomchat serve`: Envoy, the replicas, the poster."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs `module` with this interpreter and this installation's code.

    `python -m` puts the working directory first on the module path, so a server
    started from inside another checkout would run that checkout's code in its
    children (a poster speaking another version's frames). `-P` leaves the
    working directory out: the child imports the package from where it is
    installed (or from PYTHONPATH), as the `atomchat` command itself does.
    """
    return [sys.executable, "-P", "-m", module, *args]


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies.

    Linux sends it when the thread that started the child ends: start children
    from the event loop's thread, which lives as long as the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            # The parent died before prctl took effect.
            os._exit(1)

    return preexec
