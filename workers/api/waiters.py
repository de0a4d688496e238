"""Wake HTTP requests waiting for a command's outcome via Postgres LISTEN/NOTIFY (no polling).

The sequencer NOTIFYs `opsml_outcomes` with comma-separated command ids in the same transaction
that stores the outcomes, so a notification always follows a committed outcome. If the listening
connection drops, every waiter is woken to re-read the database (nothing can be missed).

The outcome rows of the notified commands somebody waits for are read here, in one query per
notification (on the listening connection: no pool round trip), and handed to the waiting
requests, which answer from them instead of each querying again. Reading after the NOTIFY is
safe: a notification is delivered only after its transaction committed, so the rows are visible.
A waiter woken without a row (listener lost, read failed) re-reads the database itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import structlog

from registry_core.persistence import db
from workers.api.listener import Listener

log = structlog.get_logger("opsml.api.waiters")
CHANNEL = "opsml_outcomes"
READ_TIMEOUT = 5.0  # a stuck read must not hold later notifications: the waiters re-read

# The single-command outcome query, for many commands at once: the same columns, so a row read
# here is exactly what the request would have read itself.
_ONE = "WHERE o.command_id = $1;"
assert db.Q["get_outcome_with_card"].endswith(_ONE), "get_outcome_with_card changed shape"
OUTCOMES_WITH_CARDS = (
    db.Q["get_outcome_with_card"].removesuffix(_ONE) + "WHERE o.command_id = ANY($1::uuid[]);"
)

Row = dict[str, Any]


class OutcomeWaiters:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        # per command id: the futures of the requests waiting for it; each gets the outcome row
        # (or None: "re-read the database")
        self.waiters: dict[str, set[asyncio.Future[Row | None]]] = {}
        # whatever happened while it was deaf (reconnected or not), the waiters re-read
        self.listener = Listener(
            dsn, CHANNEL, self._on_notify, lambda _ok: self._wake_all(), "outcome listener"
        )
        self._todo: set[str] = set()  # notified ids with waiters, not read yet
        self._reader: asyncio.Task[None] | None = None

    @property
    def conn(self) -> asyncpg.Connection | None:
        return self.listener.conn

    async def start(self) -> None:
        await self.listener.start(must_listen=True)

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.listener.stop()
        self._wake_all()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        waiting = [cid for cid in payload.split(",") if cid in self.waiters]
        if not waiting:
            return
        self._todo.update(waiting)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_notified())

    async def _read_notified(self) -> None:
        """Read the outcomes of the notified commands in batches (one query at a time on the
        listening connection) and hand each row to its waiters."""
        while self._todo:
            ids, self._todo = self._todo, set()
            rows: dict[str, Row] = {}
            try:
                conn = self.listener.listening()
                if conn is not None:
                    found = await conn.fetch(OUTCOMES_WITH_CARDS, list(ids), timeout=READ_TIMEOUT)
                    rows = {str(r["command_id"]): dict(r) for r in found}
            except Exception as exc:  # the waiters re-read through the pool
                log.warning("reading notified outcomes failed", error=f"{type(exc).__name__}")
            for cid in ids:
                self._wake(cid, rows.get(cid))

    def _wake(self, cid: str, row: Row | None) -> None:
        for fut in self.waiters.pop(cid, ()):
            if not fut.done():
                fut.set_result(row)

    def _wake_all(self) -> None:
        waiting, self.waiters = self.waiters, {}
        for futs in waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    @contextlib.contextmanager
    def expect(self, command_id: str) -> Iterator[asyncio.Future[Row | None]]:
        """Register interest BEFORE reading the database, so a commit between the read and the
        wait cannot be missed. The future's result is the outcome row, or None (re-read)."""
        fut: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(command_id, set()).add(fut)
        try:
            yield fut
        finally:
            futs = self.waiters.get(command_id)
            if futs is not None:
                futs.discard(fut)
                if not futs:
                    self.waiters.pop(command_id, None)
