"""An audit hook that turns any attempt to reach the network into an exception.

Loopback addresses and Unix sockets stay allowed (Jupyter kernels talk to their clients over them).
"""
from __future__ import annotations

import ipaddress
import socket
import sys

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkAccessError(RuntimeError):
    """Raised when code run by the book's tests tries to use the network."""


def _is_local_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host)
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def check(event: str, args: tuple) -> None:
    """The audit hook itself: raise NetworkAccessError for non-local connects and lookups."""
    if event in ("socket.connect", "socket.sendto") and args:
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", object()):
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if not _is_local_host(host):
            raise NetworkAccessError(f"the book must run offline, but code tried to connect to {address!r}")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname") and args:
        if not _is_local_host(args[0]):
            raise NetworkAccessError(f"the book must run offline, but code tried to look up {args[0]!r}")


_installed = False


def install() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(check)
        _installed = True
