"""Wake HTTP requests waiting for a command's outcome via Postgres LISTEN/NOTIFY (no polling).

The sequencer NOTIFYs `opsml_outcomes` with comma-separated command ids in the same transaction
that stores the outcomes, so a notification always follows a committed outcome. If the listening
connection drops, every waiter is woken to re-read the database (nothing can be missed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import asyncpg
import structlog

log = structlog.get_logger("opsml.api.waiters")
CHANNEL = "opsml_outcomes"


class OutcomeWaiters:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.conn: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._watch = asyncio.create_task(self._watchdog())

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.conn and not self.conn.is_closed():
            await self.conn.close()
        self._wake_all()

    async def _connect(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.add_listener(CHANNEL, self._on_notify)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.conn is None or self.conn.is_closed():
                try:
                    await self._connect()
                    log.info("outcome listener reconnected")
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("outcome listener cannot reconnect yet", error=str(exc))
                finally:
                    self._wake_all()  # whatever happened while we were deaf, re-read

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for cid in payload.split(","):
            for fut in self.waiters.pop(cid, ()):
                if not fut.done():
                    fut.set_result(None)

    def _wake_all(self) -> None:
        waiting, self.waiters = self.waiters, {}
        for futs in waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    @contextlib.contextmanager
    def expect(self, command_id: str) -> Iterator[asyncio.Future[None]]:
        """Register interest BEFORE reading the database, so a commit between the read and the
        wait cannot be missed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(command_id, set()).add(fut)
        try:
            yield fut
        finally:
            futs = self.waiters.get(command_id)
            if futs is not None:
                futs.discard(fut)
                if not futs:
                    self.waiters.pop(command_id, None)
