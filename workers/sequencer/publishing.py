"""Publishing the sequencer's events to the log, and reading back what a retried produce left.

Every event of a batch is acknowledged before anything of the batch is projected; the offsets
Kafka gave them are what the projection records. Tansu has no idempotent producer, so a
retried produce can leave an unacknowledged copy of an event in the log: the live projection
reads those gaps too, so that it sees the same records a replay will (`fill_gaps`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from registry_core.contracts.codec import encode
from registry_core.domain.events import CommandRejected, Event
from registry_core.messaging import EpochFence, EventDecoder
from registry_core.persistence.projection import LoggedEvent

log = structlog.get_logger("opsml.sequencer")

GAP_READ_SECONDS = 10


def event_key(event: Event) -> bytes | None:
    """The record key, as bytes: the event's own `partition_key` (a republish keys alike)."""
    key = event.partition_key
    return key.encode() if key is not None else None


class Publisher:
    def __init__(
        self, producer: AIOKafkaProducer, topic: str, reader: Callable[[], AIOKafkaConsumer]
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.partition = TopicPartition(topic, 0)
        self.reader = reader  # a fresh partition reader, for the gaps
        # The offset the next event this sequencer publishes should get (after its marker);
        # -1 until the start-up has caught up: no gap is looked for before that.
        self.next_event_offset = -1

    async def publish(self, events: list[Event], payloads: list[bytes]) -> list[int]:
        """Publish the events in order and return each one's offset once Kafka has acknowledged
        all of them.

        The records go straight into record batches (`create_batch` / `send_batch`) instead of
        one `send()` each, which costs a future, a coroutine and the accumulator's bookkeeping
        per record. A batch's records get consecutive offsets from its base offset, the same
        arithmetic aiokafka applies to the futures of `send()`; batches are queued in order on
        the one partition (each waits for the previous one to drain), and the producer retries
        a failed batch as it would retry `send()`'s."""
        sent: list[tuple[asyncio.Future[Any], list[int]]] = []
        batch = self.producer.create_batch()
        relative: list[int] = []
        for ev, payload in zip(events, payloads, strict=True):
            key = event_key(ev)
            meta = batch.append(key=key, value=payload, timestamp=None)
            if meta is None:  # full: queue it, start the next (an empty batch takes any record)
                sent.append((await self._send(batch), relative))
                batch, relative = self.producer.create_batch(), []
                meta = batch.append(key=key, value=payload, timestamp=None)
                assert meta is not None
            relative.append(meta.offset)
        if relative:
            sent.append((await self._send(batch), relative))
        acked = await asyncio.gather(*(future for future, _ in sent))
        return [md.offset + r for md, (_, rel) in zip(acked, sent, strict=True) for r in rel]

    async def _send(self, batch: Any) -> asyncio.Future[Any]:
        return await self.producer.send_batch(batch, self.topic, partition=0)

    async def publish_one(self, event: Event, payload: bytes) -> None:
        await self.producer.send_and_wait(self.topic, payload, key=event_key(event), partition=0)

    async def answers(self, rejections: list[CommandRejected]) -> list[LoggedEvent]:
        """Publish rejections for commands whose decision cannot be stored (or read back)."""
        if not rejections:
            return []
        payloads = [encode(a) for a in rejections]
        offsets = await self.publish(list(rejections), payloads)
        for a, offset in zip(rejections, offsets, strict=True):
            log.warning(
                "command rejected: its decision cannot be stored", command_id=str(a.command_id),
                offset=offset, reason=a.reason,
            )  # fmt: skip
        return [
            LoggedEvent(offset, a, True, payload)
            for offset, a, payload in zip(offsets, rejections, payloads, strict=True)
        ]

    async def fill_gaps(
        self, logged: list[LoggedEvent], epoch: int
    ) -> tuple[list[LoggedEvent], bool]:
        """The batch's events plus any other records between the last known event offset and
        the batch's last one (and whether there were any).

        A produce retried across a broker failure can leave an unacknowledged first copy of an
        event in the log before the acknowledged one (Tansu has no idempotent producer). Replay
        and catch-up read the log, where the first copy of a decision wins; the live projection
        must see the same records, or a replay would differ from it. So when the acknowledged
        offsets leave holes, the holes are read and projected too. project()'s rule (the first
        copy of a decision wins, checked against stored outcomes too) then applies the first
        copy of this batch's event and archives the acknowledged one as not applied, and never
        applies a late copy of an earlier decision again; other records follow the epoch rule,
        as in catch-up (`epoch`: this sequencer's)."""
        start = self.next_event_offset
        end = max(e.offset for e in logged)
        self.next_event_offset = end + 1
        holes = set(range(start, end + 1)) - {e.offset for e in logged}
        if start < 0 or not holes:
            return logged, False
        log.warning(
            "the events log has records this batch did not acknowledge; projecting them too",
            holes=len(holes), first=min(holes), last=max(holes),
        )  # fmt: skip
        extra = await self._read(holes, epoch)
        return sorted([*logged, *extra], key=lambda e: e.offset), bool(extra)

    async def _read(self, holes: set[int], epoch: int) -> list[LoggedEvent]:
        extra: list[LoggedEvent] = []
        decoder = EventDecoder(EpochFence(epoch))  # nothing newer than ours can be there
        consumer = self.reader()
        await consumer.start()
        try:
            consumer.assign([self.partition])
            consumer.seek(self.partition, min(holes))
            position, deadline = min(holes), time.monotonic() + GAP_READ_SECONDS
            # a hole may be a missing offset (Tansu can skip one when it dies): read until past
            # the last hole or give up on what never appears
            while position <= max(holes) and time.monotonic() < deadline:
                fetched = await consumer.getmany(self.partition, timeout_ms=500)
                for rec in fetched.get(self.partition, []):
                    position = max(position, rec.offset + 1)
                    if rec.offset not in holes:
                        continue
                    event = decoder.decode(rec.offset, rec.value)  # (skips what is no event)
                    if event is not None:
                        payload = rec.value.decode()
                        extra.append(LoggedEvent(event.offset, event.event, event.applied, payload))
        finally:
            await consumer.stop()
        return extra
