"""Destinations a peer chose (Via, Contact, Record-Route, SDP c=/m=), checked before any sendto.

asyncio's datagram transport closes itself when `sendto` raises anything but OSError, and with
the SIP socket closed the gateway answers nothing more: a Via port of 70000 made sendto raise
OverflowError. A host name is no better: sendto would resolve it with blocking DNS on the event
loop. So every peer-derived address goes through `usable_destination` first: an IP literal of
the socket's family and a port in 1..65535, or None (the caller drops the datagram and logs).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


def usable_destination(address: Any, family: int = socket.AF_INET) -> tuple[str, int] | None:
    """(host, port) ready for `sendto` on a socket of `family`, or None when it cannot be used.

    An IPv4 address on an IPv6 socket is written in its IPv4-mapped form (dual-stack sockets).
    """
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a host name (resolve it first, off the loop) or garbage
    if ip.is_unspecified:
        return None  # 0.0.0.0 / :: is "no address" (SDP hold), never a destination
    if family == socket.AF_INET6:
        return (f"::ffff:{ip}" if ip.version == 4 else str(ip)), port
    return (str(ip), port) if ip.version == 4 else None
