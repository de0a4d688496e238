"""The gap guard of ContiguousReader, against a scripted consumer (the fetch sequence that
Tansu produced under concurrent producers: offset N+1 visible before N); and the event log's
reader on top of it, which every reader of the log shares (skip, decode, fence)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import uuid4

from aiokafka import TopicPartition

from registry_core.contracts.codec import encode
from registry_core.domain.events import SequencerStarted
from registry_core.messaging import (
    ContiguousReader,
    DecodeCounts,
    EpochFence,
    EventDecoder,
    EventLogReader,
)

TP = TopicPartition("t", 0)


@dataclass
class Rec:
    offset: int


class ScriptedConsumer:
    def __init__(self, fetches: list[list[int]]) -> None:
        self.fetches = fetches
        self.seeks: list[int] = []

    def seek(self, tp: object, offset: int) -> None:
        self.seeks.append(offset)

    async def getmany(self, tp: object, timeout_ms: int, max_records: int) -> dict:
        offsets = self.fetches.pop(0) if self.fetches else []
        return {TP: [Rec(o) for o in offsets]}


async def test_a_late_record_is_waited_for_not_skipped() -> None:
    consumer = ScriptedConsumer([[0, 1, 2], [4, 5], [3, 4, 5], [6]])
    reader = ContiguousReader(consumer, TP, 0, retry_delay=0)
    seen = []
    for _ in range(4):
        seen += [r.offset for r in await reader.read(10, 100)]
    assert seen == [0, 1, 2, 3, 4, 5, 6]
    assert consumer.seeks == [0, 3]  # re-seeked to the missing offset once
    assert reader.gaps_accepted == 0


async def test_a_prefix_before_a_gap_is_delivered() -> None:
    consumer = ScriptedConsumer([[0, 1, 3], [2, 3]])
    reader = ContiguousReader(consumer, TP, 0, retry_delay=0)
    assert [r.offset for r in await reader.read(10, 100)] == [0, 1]
    assert [r.offset for r in await reader.read(10, 100)] == [2, 3]


async def test_a_gap_that_never_fills_is_accepted_after_the_timeout() -> None:
    consumer = ScriptedConsumer([[5, 6], [5, 6], [5, 6]])
    reader = ContiguousReader(consumer, TP, 3, gap_timeout=0.0, retry_delay=0)
    assert await reader.read(10, 100) == []
    assert reader.gaps_accepted == 1 and reader.position == 5
    assert [r.offset for r in await reader.read(10, 100)] == [5, 6]


async def test_refetched_records_are_not_delivered_twice() -> None:
    consumer = ScriptedConsumer([[0, 1], [0, 1, 2]])
    reader = ContiguousReader(consumer, TP, 0, retry_delay=0)
    assert [r.offset for r in await reader.read(10, 100)] == [0, 1]
    assert [r.offset for r in await reader.read(10, 100)] == [2]


async def test_empty_fetches_do_not_restart_the_wait_for_a_missing_record() -> None:
    """A broker coming back from a restart answers some fetches with nothing; the gap's clock
    keeps running through them, so the gap is accepted after `gap_timeout`, not never."""
    consumer = ScriptedConsumer([[5, 6], []] * 20 + [[5, 6]])
    reader = ContiguousReader(consumer, TP, 3, gap_timeout=0.2, retry_delay=0)
    seen: list[int] = []
    for _ in range(40):
        seen += [r.offset for r in await reader.read(10, 100)]
        if reader.gaps_accepted:
            break
        await asyncio.sleep(0.03)
    assert reader.gaps_accepted == 1 and reader.position == 5
    while consumer.fetches:
        seen += [r.offset for r in await reader.read(10, 100)]
    assert seen == [5, 6]


async def test_a_gap_out_of_sight_longer_than_the_wait_gets_a_whole_new_wait() -> None:
    """Seen, then only empty fetches (an outage) for longer than `gap_timeout`, then seen again:
    a record written slowly after the restart still gets the full wait."""
    consumer = ScriptedConsumer([[5, 6], [], [], [5, 6], [3, 4, 5, 6]])
    reader = ContiguousReader(consumer, TP, 3, gap_timeout=0.3, retry_delay=0)
    seen = [r.offset for r in await reader.read(10, 100)]
    for _ in range(3):
        await asyncio.sleep(0.2)
        seen += [r.offset for r in await reader.read(10, 100)]
    assert reader.gaps_accepted == 0, "the gap was skipped on first sight after the outage"
    seen += [r.offset for r in await reader.read(10, 100)]
    assert seen == [3, 4, 5, 6] and reader.gaps_accepted == 0


async def test_progress_restarts_the_wait() -> None:
    """Progress past one gap resets the clock: a second gap gets its whole `gap_timeout`, though
    both together took longer than that."""
    consumer = ScriptedConsumer([[1], [0, 1, 3], [3], [2, 3]])
    reader = ContiguousReader(consumer, TP, 0, gap_timeout=1.0, retry_delay=0)
    seen = [r.offset for r in await reader.read(10, 100)]
    for _ in range(3):
        await asyncio.sleep(0.6)
        seen += [r.offset for r in await reader.read(10, 100)]
    assert seen == [0, 1, 2, 3] and reader.gaps_accepted == 0


# ---- the event log's reader: gap-free, decoded, fenced (registry_core.messaging.events) -------


@dataclass
class Record:
    offset: int
    value: bytes | None


class LogConsumer:
    """A consumer over a fixed log: each fetch returns the records from the sought offset on."""

    def __init__(self, log: list[bytes | None], per_fetch: int = 3) -> None:
        self.log, self.per_fetch, self.position = log, per_fetch, 0

    def seek(self, tp: object, offset: int) -> None:
        self.position = offset

    async def getmany(self, tp: object, timeout_ms: int, max_records: int) -> dict:
        n = min(self.per_fetch, max_records)
        got = [Record(o, self.log[o]) for o in range(self.position, len(self.log))][:n]
        self.position += len(got)
        return {TP: got}


def _marker(epoch: int) -> bytes:
    cid = uuid4()
    return encode(SequencerStarted(event_id=cid, command_id=cid, occurred_at=datetime.now(UTC),
                                   epoch=epoch))  # fmt: skip


async def test_the_event_reader_skips_what_is_not_an_event_and_fences_older_epochs() -> None:
    log = [_marker(1), None, b"not json", _marker(2), _marker(1), _marker(2), _marker(3)]
    undecodable: list[tuple[int, object, int]] = []
    counts = DecodeCounts()
    decoder = EventDecoder(EpochFence(0), counts, on_undecodable=lambda *a: undecodable.append(a))
    reader = EventLogReader(LogConsumer(log), TP, 0, decoder=decoder, end=5)
    got = []
    while not reader.done:
        got += await reader.read(10, 100)
    assert [(d.offset, d.event.epoch, d.applied) for d in got] == [
        (0, 1, True), (3, 2, True), (4, 1, False), (5, 2, True)
    ]  # fmt: skip
    # past the skipped records and not past `end`; the placeholder (None) answers no command,
    # the garbage is handed on with the fence's epoch at that point
    assert reader.position == 6 and decoder.max_epoch == 2
    assert undecodable == [(2, b"not json", 1)]
    assert (counts.applied, counts.fenced, counts.undecodable) == (3, 1, 2)


async def test_the_event_reader_without_an_end_reads_on_and_keeps_the_epoch() -> None:
    reader = EventLogReader(
        LogConsumer([_marker(5), _marker(4), _marker(5)], per_fetch=1), TP, 0,
        decoder=EventDecoder(EpochFence(5)),
    )  # fmt: skip
    applied = []
    for _ in range(4):  # the last read finds nothing new
        applied += [d.applied for d in await reader.read(10, 100)]
    assert applied == [True, False, True] and not reader.done and reader.position == 3


class TansuLikeConsumer(ScriptedConsumer):
    """A scripted consumer with a high-water mark and a fetcher whose wait the pace sets."""

    def __init__(self, fetches: list[list[int]], high: int) -> None:
        super().__init__(fetches)
        self.high = high
        self._fetch_max_wait_ms = 20
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=20)

    def highwater(self, tp: object) -> int:
        return self.high


async def test_behind_is_an_empty_fetch_below_the_high_water_mark() -> None:
    consumer = TansuLikeConsumer([[], [0], [], [2]], high=1)
    reader = ContiguousReader(consumer, TP, 0, retry_delay=0)
    await reader.read(10, 100)
    assert reader.fetched == 0 and reader.behind()  # offset 0 exists, nothing came
    await reader.read(10, 100)
    assert reader.fetched == 1 and not reader.behind()
    await reader.read(10, 100)
    assert not reader.behind()  # at the end of the log: empty is normal
    consumer.high = 3
    await reader.read(10, 100)  # a gap (2 before 1): records came, not "behind"
    assert reader.fetched == 1 and not reader.behind()


async def test_reads_that_come_back_empty_below_the_end_lengthen_the_fetch_wait() -> None:
    """What keeps a reader going on Tansu as its log grows: empty answers while records exist
    raise the consumer's wait until the broker's fetches deliver; at the end of the log (what
    Apache Kafka's empty answers always are) the wait stays the consumer's own."""
    at_end = TansuLikeConsumer([[]] * 5, high=0)
    reader = ContiguousReader(at_end, TP, 0, retry_delay=0)
    for _ in range(5):
        await reader.read(1000, 100)
    assert at_end._fetcher._fetch_max_wait_ms == 20

    behind = TansuLikeConsumer([[]] * 5 + [[0, 1]], high=2)
    reader = ContiguousReader(behind, TP, 0, retry_delay=0)
    waits = []
    for _ in range(5):
        await reader.read(1000, 100)
        waits.append(behind._fetcher._fetch_max_wait_ms)
    assert waits == [25, 31, 39, 49, 61]
    assert [r.offset for r in await reader.read(1000, 100)] == [0, 1]
    assert 60 <= behind._fetcher._fetch_max_wait_ms <= 61  # then decays slowly
