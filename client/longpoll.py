"""The outcome long-poll on a lean HTTP/1.1 connection.

Every registration waits for its outcome with one `GET /api/v1/commands/{id}?wait=...`. Through
httpx that request cost the client about as much CPU as the rest of the registration together
(URL merging, auth and redirect layers, anyio cancel scopes and locks around every request; see
docs/performance.md). This module sends that one request over plain asyncio streams on kept-alive
connections and parses the answer the API gives it: a status line, headers, a `Content-Length`
body.

It only ever takes the fast path: anything else - a proxy configured in the environment, an
error status, a chunked or unframed answer, a connection that fails before any byte of an answer
came back on a fresh connection - returns None and the caller sends the same request through
httpx with its retries, error mapping and messages (`client/retry.py`). A kept-alive connection
the server closed while idle is retried once on a new connection (the request is a read: safe
to send again).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from urllib.parse import urlsplit
from uuid import UUID

import httpx

MAX_IDLE = 8  # kept-alive connections per registry client (concurrent waits open more)
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class _Fallback(Exception):
    """Answer this request through httpx instead."""


class _Stale(Exception):
    """A kept-alive connection died before answering: try once more on a new one."""


def _uses_proxy(url: str) -> bool:
    """Whether httpx (trust_env) would route this URL through a proxy from the environment."""
    proxies = urllib.request.getproxies()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class OutcomePoller:
    """GETs on one registry's API over kept-alive connections; `get` returns (status, body) for
    a 200/202 answer, None when the caller should use httpx instead."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        self.enabled = parts.scheme in ("http", "https") and not _uses_proxy(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        host_header = self.host if parts.port is None else f"{self.host}:{parts.port}"
        if ":" in self.host and parts.port is not None:  # IPv6 literal
            host_header = f"[{self.host}]:{parts.port}"
        lines = [f"Host: {host_header}", "Accept: application/json", "User-Agent: opsml-registry"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.header_block = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str, wait: float) -> tuple[int, bytes] | None:
        if not self.enabled:
            return None
        request = f"GET {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self.header_block
        try:
            for _ in range(2):
                reused = bool(self._idle)
                try:
                    conn = self._idle.pop() if reused else await self._connect()
                except (OSError, TimeoutError, ssl.SSLError):
                    return None
                try:
                    return await asyncio.wait_for(
                        self._exchange(conn, request, reused), self.timeout + wait
                    )
                except _Stale:
                    continue
            return None
        except (_Fallback, OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            return None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.tls and self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # the trust httpx's requests get
        return await asyncio.wait_for(
            asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ssl if self.tls else None,
                server_hostname=self.host if self.tls else None,
            ),
            self.timeout,
        )

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes, reused: bool
    ) -> tuple[int, bytes]:
        reader, writer = conn
        keep = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:  # the server closed it while it sat idle
                    raise _Stale from None
                raise
            except asyncio.LimitOverrunError:
                raise _Fallback from None
            if len(head) > MAX_HEADER_BYTES:
                raise _Fallback
            status, length, close = _parse_head(head)
            body = await reader.readexactly(length)
            if status not in (200, 202):
                raise _Fallback
            keep = not close
            return status, body
        finally:
            if keep and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, content length, server closes) from a response head; _Fallback for anything but
    a plain HTTP/1.1 answer framed by Content-Length."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version != "HTTP/1.1" or not code.isdigit():
        raise _Fallback
    length = -1
    close = False
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == "content-length":
            value = value.strip()
            if not value.isdigit() or length != -1:
                raise _Fallback
            length = int(value)
        elif name == "transfer-encoding":
            raise _Fallback
        elif name == "connection" and "close" in value.lower():
            close = True
    if not 0 <= length <= MAX_BODY_BYTES:
        raise _Fallback
    return int(code), length, close


def outcome_path(command_id: UUID, wait: float) -> str:
    return f"/api/v1/commands/{command_id}?wait={wait}"
