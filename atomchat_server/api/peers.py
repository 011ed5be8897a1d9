"""Who is on the other end of a call, as an address the limits can count by.

The address is the connection's peer. When the peer is one of our own
proxies (ATOMCHAT_TRUSTED_PROXIES: our Envoy, which writes the address it
saw into x-atomchat-client-address, overwriting whatever a client sent), the
client is the address in that header instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from atomchat_server.config import IPNetwork

CLIENT_ADDRESS_HEADER = "x-atomchat-client-address"


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
    for key, value in metadata or ():
        if key == CLIENT_ADDRESS_HEADER and isinstance(value, str) and value.strip():
            return value.strip()
    return host
