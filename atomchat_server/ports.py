"""Ports this process listens on: one owner each.

gRPC's server and Envoy would share a port with another process that binds
it with SO_REUSEPORT (two `atomchat serve` on 50051 split the traffic). Both
bind exclusively (the gRPC option "grpc.so_reuseport" 0; Envoy's listener
without reuse_port), and a port that is taken is found out first, here, so
that it is one line rather than a bind error from deep inside.
"""

from __future__ import annotations

import errno
import socket


class PortInUse(OSError):
    """Another process listens on a port this one needs."""

    def __init__(self, port: int, what: str = "") -> None:
        self.port = port
        label = f"{what} " if what else ""
        super().__init__(
            errno.EADDRINUSE, f"{label}port {port} is already in use (another atomchat serve?)"
        )

    def __str__(self) -> str:
        return str(self.strerror)


def ensure_free(host: str, port: int, what: str = "") -> None:
    """Raise PortInUse if `port` on `host` cannot be bound (port 0 is always free)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return  # the server's own bind reports a bad address
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        # Like a listening server: a port in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port, what) from exc
            raise
