"""Messaging: reading one partition gap-free (`ContiguousReader`) at a pace that follows the load
(`FetchPace`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class ContiguousReader:
    """Reads one partition from a position, handing out only gap-free runs of records.

    A plain (non-compacted, non-transactional) topic has contiguous offsets, so a fetch that
    starts past the position we asked for means a record is not visible yet: measured on Tansu
    0.6 with several concurrent producers, a fetch can return offset N+1 while N is still being
    written, and a consumer that accepts it skips N for good (a lost command). We re-seek and
    retry; only a gap that persists for `gap_timeout` seconds is accepted, loudly.
    """

    def __init__(
        self,
        consumer: Any,
        tp: Any,
        position: int,
        *,
        gap_timeout: float = 5.0,
        retry_delay: float = 0.01,
    ) -> None:
        self.consumer = consumer
        self.tp = tp
        self.position = position
        self.gap_timeout = gap_timeout
        self.retry_delay = retry_delay
        self.gap_since: float | None = None
        self.gap_seen = 0.0  # when a fetch last showed the gap
        self.gaps_accepted = 0
        consumer.seek(tp, position)

    async def read(self, timeout_ms: int, max_records: int) -> list[Any]:
        got = await self.consumer.getmany(self.tp, timeout_ms=timeout_ms, max_records=max_records)
        records = sorted(got.get(self.tp, []), key=lambda r: r.offset)
        run: list[Any] = []
        gap_at = None
        for rec in records:
            if rec.offset < self.position:
                continue  # seen already (a re-fetch after a re-seek)
            if rec.offset > self.position + len(run):
                gap_at = rec.offset
                break
            run.append(rec)
        self.position += len(run)
        if gap_at is None:
            # Only progress ends a wait for a missing record. An empty fetch says nothing about
            # it (a broker that is restarting answers empty or not at all); resetting the clock
            # there let a gap that alternated with empty fetches hold the partition for 11 s
            # instead of `gap_timeout` in the durable-broker restart test.
            if run:
                self.gap_since = None
            return run
        loop = asyncio.get_running_loop()
        now = loop.time()
        # The clock starts when the gap is first seen, again after progress, and again when the
        # gap was out of sight (only empty fetches: a broker outage) for longer than the wait
        # itself - a record written slowly after a restart gets a whole `gap_timeout`.
        if run or self.gap_since is None or now - self.gap_seen > self.gap_timeout:
            self.gap_since = now
        self.gap_seen = now
        if now - self.gap_since < self.gap_timeout:
            log.warning(
                "offset gap: re-reading", topic=self.tp.topic, missing=self.position, next=gap_at
            )
            self.consumer.seek(self.tp, self.position)
            if not run:
                await asyncio.sleep(self.retry_delay)
            return run
        log.error(
            "offset gap persisted; skipping it",
            topic=self.tp.topic,
            missing_from=self.position,
            missing_to=gap_at - 1,
            waited_s=round(now - self.gap_since, 2),
        )
        self.gaps_accepted += 1
        self.gap_since = None
        self.position = gap_at
        self.consumer.seek(self.tp, self.position)
        return run


class FetchPace:
    """A consumer's fetch wait, short while records keep coming and long when the log is quiet.

    Tansu answers a fetch only when its wait runs out, even if records arrive meanwhile, so the
    wait is the latency a new record waits on average half of. A long wait keeps an idle consumer
    (and the broker) from polling all the time. A short one, while busy, takes most of that delay
    off each record. aiokafka reads the wait from its fetcher when it builds each fetch request;
    it has no public setter, so this sets that attribute and does nothing if a release renames it
    (the consumer then keeps the wait it was created with)."""

    def __init__(
        self,
        consumer: Any,
        *,
        idle_ms: int,
        busy_ms: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = getattr(consumer, "_fetcher", None)
        self.idle_ms, self.busy_ms, self.window_s, self.clock = idle_ms, busy_ms, window_s, clock
        self.last_busy = -float("inf")
        self.current = idle_ms
        self._set(idle_ms)

    def saw(self, n: int) -> None:
        """After each read: `n` records came back."""
        now = self.clock()
        if n:
            self.last_busy = now
            if self.current != self.busy_ms:
                self._set(self.busy_ms)
        elif self.current != self.idle_ms and now - self.last_busy > self.window_s:
            self._set(self.idle_ms)

    def _set(self, ms: int) -> None:
        self.current = ms
        if self.fetcher is not None and hasattr(self.fetcher, "_fetch_max_wait_ms"):
            self.fetcher._fetch_max_wait_ms = ms
