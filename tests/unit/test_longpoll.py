"""The client's lean outcome long-poll (client/longpoll.py) against a scripted loopback server:
what it answers itself, and everything it hands back to httpx (None)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from client import longpoll

Script = Callable[[bytes, int], bytes | None]  # (request head, n-th request on conn) -> reply


@asynccontextmanager
async def server(script: Script) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A loopback HTTP server answering each request with script(head, index_on_connection);
    None closes the connection without answering. Yields (base url, heads seen, connections)."""
    heads: list[bytes] = []
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(1)
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                reply = script(head, n)
                n += 1
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads, conns
    finally:
        srv.close()
        await srv.wait_closed()


def ok(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


async def test_answers_and_keeps_the_connection() -> None:
    async with server(lambda head, n: ok(b'{"n": %d}' % n)) as (url, heads, conns):
        p = longpoll.OutcomePoller(url + "/prefix/", {"Authorization": "Bearer t0k"}, 5)
        assert await p.get("/api/v1/commands/x?wait=1", 1) == (200, b'{"n": 0}')
        assert await p.get("/api/v1/commands/y?wait=1", 1) == (200, b'{"n": 1}')
        await p.aclose()
    assert len(conns) == 1  # kept alive
    first = heads[0].decode()
    assert first.startswith("GET /prefix/api/v1/commands/x?wait=1 HTTP/1.1\r\n")
    assert "\r\nAuthorization: Bearer t0k\r\n" in first
    assert f"\r\nHost: {url.removeprefix('http://')}\r\n" in first


async def test_pending_202_is_an_answer() -> None:
    async with server(lambda head, n: ok(b"{}", "202 Accepted")) as (url, _, _):
        p = longpoll.OutcomePoller(url, {}, 5)
        assert await p.get("/a", 0) == (202, b"{}")
        await p.aclose()


async def test_idle_connection_closed_by_the_server_is_retried_once() -> None:
    # the first connection answers once, then closes when the next request arrives
    async with server(lambda head, n: ok(b"[]") if n == 0 else None) as (url, heads, conns):
        p = longpoll.OutcomePoller(url, {}, 5)
        assert await p.get("/a", 0) == (200, b"[]")
        assert await p.get("/b", 0) == (200, b"[]")  # stale -> a new connection
        await p.aclose()
    assert len(conns) == 2
    assert [h.split(b" ")[1] for h in heads] == [b"/a", b"/b", b"/b"]


@pytest.mark.parametrize(
    "reply",
    [
        ok(b'{"detail": "no"}', "401 Unauthorized"),
        ok(b'{"detail": "no"}', "404 Not Found"),
        ok(b"{}", "503 Service Unavailable", "retry-after: 1\r\n"),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}",  # body cut short
        b"garbage\r\n\r\n",
    ],
)
async def test_anything_unusual_goes_to_httpx(reply: bytes) -> None:
    def script(head: bytes, n: int) -> bytes:
        return reply

    async with server(script) as (url, _, _):
        p = longpoll.OutcomePoller(url, {}, 1)
        got = await p.get("/a", 0)
        await p.aclose()
    assert got is None


async def test_connection_closed_without_answer_on_a_fresh_connection() -> None:
    async with server(lambda head, n: None) as (url, _, conns):
        p = longpoll.OutcomePoller(url, {}, 1)
        assert await p.get("/a", 0) is None
        await p.aclose()
    assert len(conns) == 1  # a fresh connection is not retried here: httpx retries with policy


async def test_nothing_listening() -> None:
    s = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = s.sockets[0].getsockname()[1]
    s.close()
    await s.wait_closed()
    p = longpoll.OutcomePoller(f"http://127.0.0.1:{port}", {}, 1)
    assert await p.get("/a", 0) is None


async def test_server_that_never_answers_times_out_to_httpx() -> None:
    async with server(lambda head, n: b"") as (url, _, _):  # sends nothing, keeps reading
        p = longpoll.OutcomePoller(url, {}, 0.2)
        assert await p.get("/a", 0.1) is None
        await p.aclose()


def test_a_proxy_in_the_environment_disables_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert not longpoll.OutcomePoller("http://registry.internal:8090", {}, 1).enabled
    monkeypatch.setenv("NO_PROXY", "registry.internal")
    assert longpoll.OutcomePoller("http://registry.internal:8090", {}, 1).enabled


async def test_cancelled_wait_closes_the_connection() -> None:
    release = asyncio.Event()

    async with server(lambda head, n: b"") as (url, _, _):
        p = longpoll.OutcomePoller(url, {}, 5)
        task = asyncio.create_task(p.get("/a", 5))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert p._idle == []  # never handed back half-read
        release.set()
        await p.aclose()
