"""Webhooks: one HTTP attempt at one delivery - to the address the SSRF guard just checked,
never following a redirect, within one deadline for connect, send and read, and reading at most
a bounded prefix of the answer (the rest of a huge or endless response is never read).

Each endpoint has its own `Sender` (its own connection pool): a slow endpoint holds only its own
connections, and a TLS connection opened for one host name is never reused for another host on
the same address.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from workers.webhooks import ssrf

USER_AGENT = "opsml-registry-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    code: int | None  # None: no HTTP answer (error says why)
    error: str | None
    response: str  # the first bytes of the body, decoded leniently
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


class Sender:
    def __init__(self, *, timeout_s: float, max_response_bytes: int, allow_private: bool) -> None:
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: it would bypass the address check
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        t0 = time.perf_counter()

        def done(code: int | None, error: str | None, response: bytes = b"") -> Attempt:
            text = response[: self.max_response_bytes].decode("utf-8", "replace")
            return Attempt(code, error, text, (time.perf_counter() - t0) * 1000)

        got = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):  # the name's resolution included
                try:
                    target = ssrf.parse(url)
                    addresses = await ssrf.resolve(target, allow_private=self.allow_private)
                except ssrf.UnsafeEndpoint as exc:
                    return done(None, f"refused: {exc}")
                for n, ip in enumerate(addresses):  # every one checked; the next if refused
                    try:
                        response = await self.client.send(
                            self._request(target, ip, headers, body), stream=True
                        )
                        break
                    except httpx.ConnectError:
                        if n == len(addresses) - 1:
                            raise
                try:
                    if self.max_response_bytes:
                        async for part in response.aiter_raw():
                            got += part
                            if len(got) >= self.max_response_bytes:
                                break  # the rest is never read; the connection is dropped
                finally:
                    await response.aclose()
        except TimeoutError:
            return done(None, f"no complete answer within {self.timeout_s:g} s", bytes(got))
        except Exception as exc:  # httpx's errors, and any other: a failed attempt, never a crash
            return done(None, f"{type(exc).__name__}: {exc}"[:500], bytes(got))
        error = None
        if 300 <= response.status_code < 400:
            error = f"redirect to {response.headers.get('location', '?')[:200]} (not followed)"
        elif not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
        return done(response.status_code, error, bytes(got))

    def _request(
        self, target: ssrf.Target, ip: ssrf.IP, headers: dict[str, str], body: bytes
    ) -> httpx.Request:
        """A request to `ip` itself, carrying the URL's host (Host header, TLS server name)."""
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        default_port = target.port == (443 if target.scheme == "https" else 80)
        host = f"[{target.host}]" if ":" in target.host else target.host
        extensions = {}
        if target.scheme == "https" and str(ip) != target.host:
            extensions["sni_hostname"] = target.host
        return self.client.build_request(
            "POST",
            f"{target.scheme}://{literal}:{target.port}{target.path}",
            headers={
                **headers,
                "host": host if default_port else f"{host}:{target.port}",
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "accept-encoding": "identity",
            },
            content=body,
            extensions=extensions,
        )
