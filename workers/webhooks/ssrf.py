"""Webhooks: the SSRF guard - which endpoint URLs may be called, and the addresses to call.

An endpoint URL is refused at registration when it is not plain http(s), carries credentials, or
names a host whose addresses are not public (loopback, private, link-local - the cloud metadata
service at 169.254.169.254 -, carrier-grade NAT, multicast, reserved, unspecified, and their
IPv4-mapped IPv6 forms), unless OPSML_WEBHOOK_ALLOW_PRIVATE is set. The same check runs again at
every delivery on the freshly resolved addresses, and the connection goes to the address that
was checked (the Host header and TLS server name stay the URL's host), so a DNS answer that
changes after registration (DNS rebinding) cannot point a delivery inside the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_CHARS = 2048


class UnsafeEndpoint(ValueError):
    """The endpoint URL is not one the registry will call; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (no brackets), lower case
    port: int
    path: str  # path and query, never empty


def parse(url: str) -> Target:
    if len(url) > MAX_URL_CHARS:
        raise UnsafeEndpoint(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeEndpoint("the URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint(f"only http and https URLs are called, not {parts.scheme or '(none)'}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeEndpoint("credentials in the URL are refused; the signature authenticates")
    if not parts.hostname:
        raise UnsafeEndpoint("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeEndpoint("the URL's port is not a number from 1 to 65535") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname.lower(), port, path)


def is_public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(target: Target, *, allow_private: bool) -> list[IP]:
    """The target's addresses, every one of them checked (one private answer among public ones
    refuses the lot). UnsafeEndpoint when a name does not resolve or an address is refused."""
    try:
        literal: IP | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IP] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:  # gaierror and the like
            raise UnsafeEndpoint(f"{target.host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
        if not addresses:
            raise UnsafeEndpoint(f"{target.host} has no address")
    if not allow_private:
        for ip in addresses:
            if not is_public(ip):
                mapped = getattr(ip, "ipv4_mapped", None)
                shown = f"{ip} (= {mapped})" if mapped is not None else str(ip)
                where = (
                    f"{shown} is" if literal is not None else f"{target.host} resolves to {shown},"
                )
                raise UnsafeEndpoint(
                    f"{where} a loopback, private or reserved address;"
                    " webhooks call public addresses only (OPSML_WEBHOOK_ALLOW_PRIVATE=true"
                    " allows these, for a registry inside a trusted network)"
                )
    return addresses


async def check(url: str, *, allow_private: bool) -> Target:
    """Registration's check: parse and resolve now."""
    target = parse(url)
    await resolve(target, allow_private=allow_private)
    return target
