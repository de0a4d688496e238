"""Messaging: reading one partition gap-free (`ContiguousReader`) at a pace that follows the load
and the broker's cost of reading its log (`FetchPace`)."""

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

    Every read tells a `FetchPace` what it got (by default one that only keeps the consumer's
    fetch wait above what the broker needs, see FetchPace), so every reader of a partition - the
    worker, its catch-up, a replay, a subscriber - keeps receiving records from a broker whose
    fetches get slower as its log grows.
    """

    def __init__(
        self,
        consumer: Any,
        tp: Any,
        position: int,
        *,
        gap_timeout: float = 5.0,
        retry_delay: float = 0.01,
        pace: FetchPace | None = None,
    ) -> None:
        self.consumer = consumer
        self.tp = tp
        self.position = position
        self.gap_timeout = gap_timeout
        self.retry_delay = retry_delay
        self.gap_since: float | None = None
        self.gap_seen = 0.0  # when a fetch last showed the gap
        self.gaps_accepted = 0
        self.fetched = 0  # records the last read got from the consumer, before the gap guard
        self.pace = pace if pace is not None else FetchPace.following(consumer)
        consumer.seek(tp, position)

    def behind(self) -> bool:
        """The last read got nothing although the broker's high-water mark is past our position:
        on Tansu, its fetch wait ran out before it had read its log that far."""
        highwater = getattr(self.consumer, "highwater", None)
        high = highwater(self.tp) if highwater is not None else None
        return self.fetched == 0 and high is not None and high > self.position

    async def read(self, timeout_ms: int, max_records: int) -> list[Any]:
        """The next gap-free run of records (possibly none) within about `timeout_ms`; sooner
        when the fetch wait is short (`FetchPace.poll_ms`)."""
        got = await self.consumer.getmany(
            self.tp, timeout_ms=self.pace.poll_ms(timeout_ms), max_records=max_records
        )
        records = sorted(got.get(self.tp, []), key=lambda r: r.offset)
        self.fetched = len(records)
        self.pace.saw(self.fetched, behind=self.behind())
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
    """A consumer's fetch wait: short while records keep coming, long when the log is quiet, and
    never shorter than the broker needs to read its log.

    Tansu answers a fetch only when its wait runs out, even if records arrive meanwhile, so the
    wait is the latency a new record waits on average half of. A long wait keeps an idle consumer
    (and the broker) from polling all the time. A short one, while busy, takes most of that delay
    off each record.

    Tansu 0.6 also lists the partition's stored batches on every fetch, and a fetch whose wait
    runs out before that listing reaches the requested offset comes back EMPTY although the
    records are there: measured, a 3 ms wait never delivers from ~5k batches in memory or ~1k in
    S3 (the listing takes ~5.5 ms at 10k in memory, ~140 ms at 10k in S3); on `opsml dev`'s S3
    log that was one registration per ~2 s from ~330 commands on. So an empty read below the
    high-water mark (`saw(0, behind=True)`) raises a floor under both waits (x1.25, up to
    `max_ms`), and every read that brings records lowers it a little (x255/256): the wait follows
    the broker's cost as the log grows and after a restart. Apache Kafka answers a fetch as soon
    as records exist, so it never answers empty below the high-water mark, the floor stays 0 and
    the waits are exactly `idle_ms` / `busy_ms`.

    aiokafka reads the wait from its fetcher when it builds each fetch request; it has no public
    setter, so this sets that attribute and does nothing if a release renames it (the consumer
    then keeps the wait it was created with)."""

    GROW = 1.25
    DECAY = 255 / 256  # slow: within one run the broker's cost only grows (batches accumulate)

    def __init__(
        self,
        consumer: Any,
        *,
        idle_ms: int,
        busy_ms: int,
        window_s: float,
        max_ms: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = getattr(consumer, "_fetcher", None)
        self.idle_ms, self.busy_ms, self.window_s, self.clock = idle_ms, busy_ms, window_s, clock
        self.max_ms = max_ms
        self.floor = 0.0
        self.last_busy = -float("inf")
        self.busy = False
        self.current = idle_ms
        self._set(idle_ms)

    @classmethod
    def following(cls, consumer: Any) -> FetchPace:
        """A pace that keeps the consumer's own wait and only adds the broker's floor (a reader
        that has no idle/busy waits of its own)."""
        wait = getattr(consumer, "_fetch_max_wait_ms", None)
        if not isinstance(wait, int):
            wait = getattr(getattr(consumer, "_fetcher", None), "_fetch_max_wait_ms", 0)
        wait = wait if isinstance(wait, int) else 0
        return cls(consumer, idle_ms=wait, busy_ms=wait, window_s=0.0)

    def saw(self, n: int, *, behind: bool = False) -> None:
        """After each read: `n` records came back; `behind`: none did although the high-water
        mark is past the position."""
        now = self.clock()
        if n:
            self.last_busy = now
            self.busy = True
            self.floor *= self.DECAY
        elif behind:
            self.floor = min(float(self.max_ms), max(self.floor, self.current, 1.0) * self.GROW)
        elif self.busy and now - self.last_busy > self.window_s:
            self.busy = False
        base = self.busy_ms if self.busy else self.idle_ms
        ms = min(self.max_ms, max(base, round(self.floor)))
        if ms != self.current:
            self._set(ms)

    def poll_ms(self, limit_ms: int) -> int:
        """How long one read waits for records before `saw` hears of it: aiokafka re-sends an
        unanswered fetch with the same wait until the read's timeout, so a wait too short for
        the broker is only raised once the read returns."""
        return min(limit_ms, max(20, 3 * self.current))

    def _set(self, ms: int) -> None:
        self.current = ms
        if self.fetcher is not None and hasattr(self.fetcher, "_fetch_max_wait_ms"):
            self.fetcher._fetch_max_wait_ms = ms
