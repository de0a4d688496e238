"""The UI's live feed: one LISTEN on `opsml_outcomes` per API process, fanned out to every open
page as server-sent events.

The sequencer NOTIFYs the ids of the commands it decided in the same transaction that projects
them (registry.sql, project_batch), so by the time a notification arrives the cards are in the
read tables. The hub reads what the pages need about those commands (registered, updated or
deleted: uid, registry, space, name, version) in one query per notification and hands one small
JSON message to each open stream; the page decides whether it shows that card and re-reads its
live parts. Nothing polls: an idle page costs one open connection and a comment every 15 s.

A lost LISTEN connection is re-opened within a second, and every stream is then told to re-read
(`resync`), so nothing that happened meanwhile is missed. A slow page whose queue is full gets a
`resync` too instead of unbounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import structlog

from registry_core.auth import Principal
from workers.api.listener import Listener
from workers.api.waiters import CHANNEL
from workers.ui import data
from workers.ui.access import may_read

log = structlog.get_logger("opsml.ui.live")
QUEUE = 256
HEARTBEAT = 15.0
RESYNC = {"kind": "resync"}


class Subscriber:
    def __init__(self, who: Principal | None) -> None:
        self.who = who
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)

    def offer(self, message: dict[str, Any]) -> None:
        if message.get("space") is not None and not may_read(self.who, message["space"]):
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:  # a page that does not keep up re-reads once
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class LiveHub:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.subscribers: set[Subscriber] = set()
        self.listener = Listener(dsn, CHANNEL, self._on_notify, self._listening_again, "live feed")
        self._todo: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        # awaited on every change before the pages are told, with the listening connection and
        # whether any page is open (the overview's counts: workers/ui/data.py)
        self.on_change: list[Callable[[asyncpg.Connection, bool], Awaitable[None]]] = []

    async def start(self) -> None:
        self._chain_exit_signals()
        await self.listener.start(must_listen=False)  # pages render while it retries

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.listener.stop()
        self.end_streams()

    def end_streams(self) -> None:
        for sub in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)  # ends the stream

    def _chain_exit_signals(self) -> None:
        """End the open streams as soon as the server is asked to stop. uvicorn waits for open
        responses before it shuts the app down (`timeout_graceful_shutdown`, then cancels them
        with a traceback each): a page's stream never ends by itself, so without this every
        open tab added that wait to a Ctrl-C. uvicorn's own handlers run after ours."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # not under uvicorn's handlers (tests, an embedding app): nothing to do

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.end_streams)
                previous(signum, frame)

            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread
                return

    def _listening_again(self, ok: bool) -> None:
        if ok:
            self.broadcast(RESYNC)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if not self.subscribers and not self.on_change:
            return
        self._todo.extend(c for c in payload.split(",") if c)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while self._todo:
            ids, self._todo = self._todo, []
            try:
                conn = self.listener.listening()
                if conn is None:
                    raise ConnectionError("listener closed")
                rows = await data.briefs(conn, [UUID(c) for c in ids])
            except Exception as exc:
                log.warning("reading notified commands failed", error=type(exc).__name__)
                self.broadcast(RESYNC)
                continue
            for fn in self.on_change:
                try:
                    await fn(conn, bool(self.subscribers))
                except Exception as exc:
                    log.warning("live feed: a change hook failed", error=type(exc).__name__)
            for r in rows:
                self.broadcast(
                    {
                        "kind": r["status"],  # registered | updated | deleted
                        "uid": str(r["uid"]),
                        "registry": r["registry"],
                        "space": r["space"],
                        "name": r["name"],
                        "version": r["version"],
                    }
                )

    def broadcast(self, message: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.offer(message)

    async def stream(
        self, who: Principal | None, recheck: Callable[[], Awaitable[object]] | None = None
    ) -> AsyncIterator[bytes]:
        """One page's event stream: `retry` first, then one `data:` line per change. At every
        heartbeat `recheck` runs (the session's token again): a revoked token ends the stream."""
        sub = Subscriber(who)
        self.subscribers.add(sub)
        try:
            yield b"retry: 1000\n: connected\n\n"
            while True:
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), HEARTBEAT)
                except TimeoutError:
                    if recheck is not None:
                        try:
                            await recheck()
                        except Exception:
                            return
                    yield b": keep-alive\n\n"
                    continue
                if msg is None:
                    return
                yield b"data: " + orjson.dumps(msg) + b"\n\n"
        finally:
            self.subscribers.discard(sub)
