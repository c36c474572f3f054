"""The one rule for where Easel connects on a client's or operator's behalf (image URLs of JSON
edits, webhook endpoints): every address a host resolves to must be public, unless the operator
allows private ones.  Loopback, private, link-local, multicast and reserved addresses would let a
URL reach Redis, a cloud metadata service or an admin page from inside the network (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(ip: Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


def addresses_of(infos: list[Any]) -> list[Address]:
    """The IPs of getaddrinfo's answers (an IPv6 zone such as `%eth0` dropped)."""
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def allowed(ips: list[Address], allow_private: bool) -> bool:
    """A host may be reached only when every answer is public: a name with one private answer
    is how DNS rebinding attacks start."""
    return bool(ips) and (allow_private or all(is_public(ip) for ip in ips))


class AddressRefused(Exception):
    """The host does not resolve, or resolves to an address the policy refuses."""


def checked_address(host: str, port: int, allow_private: bool) -> str:
    """One checked address of `host` to connect to (blocking lookup; workers use it), so the
    connection goes where the check looked, not to a second lookup's answer."""
    try:
        ips = addresses_of(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except OSError as exc:
        raise AddressRefused(f"{host[:80]!r} could not be resolved") from exc
    if not allowed(ips, allow_private):
        raise AddressRefused(f"{host[:80]!r} is a loopback, private or link-local address")
    return str(ips[0])
