"""The gap guard of ContiguousReader, against a scripted consumer (the fetch sequence that
Tansu produced under concurrent producers: offset N+1 visible before N)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from registry_core.messaging import ContiguousReader

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
