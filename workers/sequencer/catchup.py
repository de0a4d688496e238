"""Catch-up: project the events a crashed predecessor published but never projected.

On start a sequencer claims an epoch, publishes its marker, and projects every event between the
tracked offset and that marker without re-deciding any (docs/architecture.md). The epoch rule
applies: an event of an epoch lower than one already seen is archived, not applied. An event
the tables refuse, or one no reader can decode, is answered here as in the live batch: the
answers go behind the marker and are projected too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from registry_core import metrics
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
)
from registry_core.domain.verdicts import Unstorable
from registry_core.messaging import EpochFence, EventDecoder, EventLogReader
from registry_core.persistence.db import Q
from registry_core.persistence.projection import LoggedEvent, project
from registry_core.persistence.projection import Unstorable as SetAside
from workers.sequencer import isolation
from workers.sequencer.artifacts import Artifacts
from workers.sequencer.publishing import Publisher
from workers.sequencer.state_cache import StateCache

log = structlog.get_logger("opsml.sequencer")

CATCH_UP_CHUNK = 2000
_OUTCOME_TYPES = frozenset(
    ("card_registered", "card_updated", "card_deleted", "command_rejected", "alias_set",
     "alias_removed")
)  # fmt: skip
_OUTCOMES = (CardRegistered, CardUpdated, CardDeleted, CommandRejected, AliasSet, AliasRemoved)


class CatchUp:
    def __init__(
        self,
        conn: asyncpg.Connection,
        *,
        tracking_name: str,
        events_topic: str,
        epoch: int,
        states: StateCache,
        publisher: Publisher,
        artifacts: Artifacts,
        reader: Callable[[], AIOKafkaConsumer],
    ) -> None:
        self.conn = conn
        self.tracking_name = tracking_name
        self.partition = TopicPartition(events_topic, 0)
        self.epoch = epoch
        self.states = states
        self.publisher = publisher
        self.artifacts = artifacts
        self.reader = reader

    async def run(self, start: int, end: int, max_epoch: int) -> int:
        """Project events [start, end] from the log (not re-deciding anything). Returns the last
        offset projected: past `end` when a command had to be answered on the way - its
        decision cannot be stored or read back (see workers/sequencer/isolation.py) - because
        those answers are published behind the marker and projected here too, in another pass
        from a fresh reader (so nothing between the marker and them is skipped)."""
        while start <= end:
            # events in the log not yet in the tables: the predecessor's leftovers (metrics)
            metrics.PROJECTION_LAG.set(end - start + 1)
            published, max_epoch = await self._pass(start, end, max_epoch)
            if published <= end:
                break
            start, end = end + 1, published
        metrics.PROJECTION_LAG.set(0)
        return end

    async def _pass(self, start: int, end: int, max_epoch: int) -> tuple[int, int]:
        """One pass of `run`; returns the last offset it published answers at (or -1) and the
        epoch rule's running maximum."""
        published = -1

        async def answer(items: list[SetAside]) -> list[LoggedEvent]:
            # in project()'s transaction: published before the chunk's offsets commit
            nonlocal published
            for item in items:
                if item.decided:
                    self.states.give_back(item.item.event)
            now = datetime.now(UTC)
            sent = await self.publisher.answers(isolation.answers(items, epoch=self.epoch, now=now))
            published = max([published, *(e.offset for e in sent)])
            return []

        # records that are no event, with the epoch rule's maximum when they were met
        unread: list[tuple[int, Any, int]] = []
        decoder = EventDecoder(
            EpochFence(max_epoch), on_undecodable=lambda *record: unread.append(record)
        )
        consumer = self.reader()
        await consumer.start()
        projected = 0
        try:
            consumer.assign([self.partition])
            events = EventLogReader(consumer, self.partition, start, decoder=decoder, end=end)
            while not events.done:
                batch: list[LoggedEvent] = []
                for got in await events.read(timeout_ms=1000, max_records=CATCH_UP_CHUNK):
                    if got.applied:
                        self.states.forget(got.event)
                    batch.append(LoggedEvent(got.offset, got.event, got.applied))
                if unread:
                    sent = await self._answer_unreadable(unread, batch)
                    unread.clear()
                    published = max([published, *(e.offset for e in sent)])
                if batch:
                    found = await project(
                        self.conn, tracking_name=self.tracking_name, epoch=self.epoch,
                        events=batch, on_unstorable=answer,
                    )  # fmt: skip
                    await self.artifacts.discard_files_of(found)
                    projected += len(batch)
        finally:
            await consumer.stop()
        log.info("projected unprojected events from the log", count=projected, start=start, end=end)
        return published, decoder.max_epoch

    async def _answer_unreadable(
        self, records: list[tuple[int, Any, int]], batch: list[LoggedEvent]
    ) -> list[LoggedEvent]:
        """Catch-up skips an event it cannot decode (so does a replay). If that event was a
        command's decision - a predecessor published it and died before projecting it - the
        command would never get an outcome: answer it with a rejection, unless the command
        already has one or a later event of the chunk gives one."""
        answered_later = {
            e.event.command_id: e.offset
            for e in batch
            if isinstance(e.event, _OUTCOMES) and e.applied
        }
        wanted: dict[UUID, tuple[int | None, str]] = {}
        for offset, payload, max_epoch in records:
            try:
                data = orjson.loads(payload or b"{}")
                kind = data["type"]
                cid = UUID(str(data["command_id"]))
                epoch = data.get("epoch")
            except Exception:
                continue  # nothing says which command it answered
            if not isinstance(kind, str) or kind not in _OUTCOME_TYPES:
                continue
            if data.get("error_code") == Unstorable.code:
                continue
            if not isinstance(epoch, int) or epoch < max_epoch:
                continue  # a fenced sequencer's event: it decided nothing
            if answered_later.get(cid, -1) > offset:
                continue
            cmd = data.get("command_offset")
            wanted[cid] = (cmd if isinstance(cmd, int) else None, kind)
        if not wanted:
            return []
        known = {r["command_id"] for r in await self.conn.fetch(Q["known_outcomes"], list(wanted))}
        now = datetime.now(UTC)
        problem = "its decision ({}) in the events log cannot be read back"
        answers = [
            isolation.answer(
                cid, problem.format(kind), epoch=self.epoch, now=now, command_offset=cmd
            )
            for cid, (cmd, kind) in wanted.items()
            if cid not in known
        ]
        return await self.publisher.answers(answers)
