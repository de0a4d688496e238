"""One LISTEN connection kept open: opened with TCP keepalives, checked every second by a
watchdog that opens a new one when it is closed, and closed at stop. The outcome waiters and
the web UI's live feed each hold one; what a notification means is theirs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from registry_core.persistence import db

log = structlog.get_logger("opsml.api")

Notify = Callable[[Any, int, str, str], None]


class Listener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Notify,
        after_check: Callable[[bool], None],
        name: str,
    ) -> None:
        """`after_check(listening_again)` runs after every reconnect attempt of the watchdog:
        True when a new connection listens, False when it could not (retried a second later)."""
        self.dsn = dsn
        self.channel = channel
        self.on_notify = on_notify
        self.after_check = after_check
        self.name = name
        self.conn: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, *, must_listen: bool) -> None:
        """Listen, then watch. `must_listen`: a first failure raises (else the watchdog
        retries it)."""
        try:
            await self.connect()
        except Exception as exc:
            if must_listen:
                raise
            log.warning(f"{self.name} cannot listen yet", error=str(exc))
        self._watch = asyncio.create_task(self._watchdog())

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.conn and not self.conn.is_closed():
            await self.conn.close()

    def listening(self) -> asyncpg.Connection | None:
        conn = self.conn
        return conn if conn is not None and not conn.is_closed() else None

    async def connect(self) -> None:
        conn = await db.connect(self.dsn)  # with the jsonb codec, like the pool's
        try:
            await db.keep_alive(conn)
            await conn.add_listener(self.channel, self.on_notify)
        except BaseException:
            conn.terminate()
            raise
        self.conn = conn  # only a listening connection: the watchdog retries anything less

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.listening() is None:
                try:
                    await self.connect()
                except Exception as exc:  # (OSError, PostgresError, InterfaceError...) retry
                    log.warning(f"{self.name} cannot listen yet", error=str(exc))
                    self.after_check(False)
                else:
                    log.info(f"{self.name} listening again")
                    self.after_check(True)
