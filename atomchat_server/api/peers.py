"""Who is on the other end of a call, as an address the limits can count by.

The address is the connection's peer. When the peer is one of our own
proxies (ATOMCHAT_TRUSTED_PROXIES: Envoy, which runs with
`use_remote_address` and appends the address it saw to x-forwarded-for),
the client is the last address in x-forwarded-for instead: the one our
proxy wrote, not any a client may have sent itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from atomchat_server.config import IPNetwork


def _host(peer: str) -> str:
    """The host of a gRPC peer string: `ipv4:1.2.3.4:5`, `ipv6:[::1]:5`, `unix:...`."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


def _trusted(host: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in proxies)


def client_address(
    peer: str,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    proxies: Sequence[IPNetwork],
) -> str:
    host = _host(peer)
    if not _trusted(host, proxies):
        return host
    forwarded = [
        value
        for key, value in metadata or ()
        if key == "x-forwarded-for" and isinstance(value, str)
    ]
    if not forwarded:
        return host
    last = forwarded[-1].rpartition(",")[2].strip()
    return last or host
