"""Webhooks: one lane per endpoint - its deliveries sent one at a time in event-offset order,
each failure retried after an exponential, jittered delay, dead-lettered after N attempts.

A lane blocks only itself: a slow, failing or unreachable endpoint holds its own task and its
own connections, never another endpoint's. The delivery counts as done only once its 2xx is
recorded; a process killed between the send and that record sends it again after the restart
(at least once: the receiver de-duplicates by `webhook-id`, the event id). A dead-lettered
delivery no longer blocks the lane (the events after it go on), and waits for a redelivery
request.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from workers.webhooks import signing, store
from workers.webhooks.policy import Backoff
from workers.webhooks.sender import Sender

log = structlog.get_logger("opsml.webhooks")

# Pending deliveries read per query; the lane reads again after a retry is scheduled or when
# woken (a redelivery request may put an older event first).
BATCH = 50


class Lane:
    def __init__(
        self, endpoint: asyncpg.Record, pool: asyncpg.Pool, sender: Sender, backoff: Backoff,
        idle_s: float,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint  # refreshed by the service when the row changes
        self.pool = pool
        self.sender = sender
        self.backoff = backoff
        self.idle_s = idle_s
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def endpoint_id(self) -> str:
        return str(self.endpoint["endpoint_id"])

    async def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass or the lane is woken (new deliveries, a redelivery request)."""
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass
        self.wake.clear()

    async def run(self) -> None:
        while True:
            batch = await store.next_deliveries(self.pool, self.endpoint_id, BATCH)
            if not batch:
                await self._sleep(self.idle_s)
                continue
            for d in batch:
                wait = (d["next_attempt_at"] - d["db_now"]).total_seconds()
                if wait > 0:
                    await self._sleep(wait)
                    break  # read again: a redelivery request may have put an older one first
                if not await self.attempt(d) or self.wake.is_set():
                    self.wake.clear()
                    break

    async def attempt(self, d: asyncpg.Record) -> bool:
        """One attempt; whether the lane may go on to the next delivery (sent or dead)."""
        endpoint = self.endpoint
        body = d["body"].encode()
        secrets_ = store.signing_secrets(endpoint, datetime.now(UTC))
        headers = signing.headers(secrets_, str(d["event_id"]), body)
        result = await self.sender.send(endpoint["url"], headers, body)
        n = d["attempts"] + 1
        this_round = n - d["round_start"]
        delay = 0.0
        if result.ok:
            status = "delivered"
        elif self.backoff.exhausted(this_round):
            status = "dead"
        else:
            status = "pending"
            delay = self.backoff.delay(this_round)
        try:
            await store.settle(
                self.pool, self.endpoint_id, d["event_offset"], attempt=n, status=status,
                delay_s=delay, code=result.code, error=result.error, response=result.response,
                latency_ms=result.latency_ms,
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError:
            log.info("webhook endpoint deleted during an attempt", endpoint=self.endpoint_id)
            return False
        log_ = log.info if result.ok else log.warning
        log_(
            "webhook attempt", endpoint=self.endpoint_id, offset=d["event_offset"], attempt=n,
            status=status, code=result.code, error=result.error,
            latency_ms=round(result.latency_ms, 1), retry_in_s=round(delay, 2) if delay else None,
        )  # fmt: skip
        return status != "pending"
