"""Which Host names the gateway answers to, and which base its result URLs are built on.

A browser page on any site can reach a gateway bound to loopback through DNS rebinding (its own
name resolving to 127.0.0.1), and cross-site forms can post to it: on a loopback bind only the
localhost names are answered, and a request whose `Origin` is a foreign site is refused.  The
`Host` header is the client's word, so result URLs come from `public_url`, or from an allowed
Host, or else from the address the connection arrived on: never from an unchecked Host.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from core.settings import GatewaySettings

log = logging.getLogger("easel.gateway")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Probes (compose, Kubernetes) call with the container's IP as Host; they reveal nothing.
UNCHECKED_PATHS = frozenset({"/healthz", "/readyz"})
_NAME = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(authority: str) -> str:
    """`name:port`, `[v6]:port` or `name` -> the lower-case name; "" for anything malformed
    (a path, a query, userinfo, a bad port), so that it can never be allowed."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        name, _, port = authority[1:].partition("]")
        port = port.removeprefix(":") if port.startswith(":") else port
    elif authority.count(":") > 1:  # a bare IPv6 address (settings only; Host brackets it)
        name, port = authority, ""
    else:
        name, _, port = authority.partition(":")
    if (port and (not port.isdigit() or len(port) > 5)) or not _NAME.fullmatch(name):
        return ""
    return name.rstrip(".")


def allowed_hosts(settings: GatewaySettings) -> frozenset[str] | None:
    """The Host names to answer, or None for any (nothing configured on a public bind, or *).
    A loopback bind always answers the localhost names; public_url's host is always allowed."""
    entries = [h.strip() for h in settings.allowed_hosts.split(",") if h.strip()]
    if "*" in entries:
        return None
    names = {host_name(h) for h in entries} - {""}
    if is_loopback(settings.host):  # only local clients reach it: local names are safe
        names |= LOOPBACK_NAMES
    if not names:
        return None
    if settings.public_url:
        names.add(host_name(urlsplit(settings.public_url).netloc.rpartition("@")[2]))
    return frozenset(names - {""})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class HostGuard:
    """ASGI middleware: 400 for a Host outside `allowed`, 403 for a foreign browser Origin."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCHECKED_PATHS:
            return await self.app(scope, receive, send)
        host = _header(scope, b"host")
        origin = _header(scope, b"origin")
        if host is not None and host_name(host) not in self.allowed:
            log.info("refused Host %r on %s", host[:100], scope["path"][:100])
            return await _refuse(send, 400, "The Host header names a host this server does not "
                                 "answer to; set EASEL_ALLOWED_HOSTS to allow it.", "invalid_host")
        if origin is not None and host_name(urlsplit(origin).netloc) not in self.allowed:
            # Browsers send Origin on cross-site POSTs, which skip CORS preflight for forms.
            return await _refuse(send, 403, "Cross-site requests are not allowed.",
                                 "invalid_origin")
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": code}}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def public_base(request: Request) -> str:
    """The base for result URLs: public_url, else a Host already checked, else the socket."""
    settings: GatewaySettings = request.app.state.settings
    if settings.public_url:
        return settings.public_url
    scheme = request.scope.get("scheme", "http")
    host = request.headers.get("host", "")
    allowed = request.app.state.allowed_hosts
    if allowed is not None and host_name(host) in allowed:  # well-formed and allowed
        return f"{scheme}://{host.strip()}{request.scope.get('root_path', '')}/"
    server = request.scope.get("server") or (settings.host, settings.port)
    address, port = server[0], server[1]
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}/"
