"""The batch pipeline: read commands, decide them, publish the events, project them.

Each batch: read up to OPSML_WORKER_BATCH_MAX commands -> drop those with an outcome -> gather
what the decider reads and what the checks say (state, card records, artifacts, access) ->
decide (workers/sequencer/decisions.py) -> place artifacts -> publish and await every ack ->
ONE Postgres transaction (read tables, archive, outcomes, tracking, NOTIFY). With the pipeline
on (OPSML_WORKER_PIPELINE), that transaction runs in a task while the next batch is read and
decided, and nothing of the next batch is published before it has committed.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from registry_core import metrics
from registry_core.domain.commands import RegisterCard
from registry_core.domain.events import CardRegistered, Event
from registry_core.errors import BrokerDataLost
from registry_core.messaging import ContiguousReader, FetchPace
from registry_core.persistence.db import Q
from registry_core.persistence.projection import LoggedEvent, get_tracking, project
from registry_core.persistence.projection import Unstorable as SetAside
from registry_core.settings import Settings
from workers.sequencer import decisions, isolation, kafka
from workers.sequencer.artifacts import Artifacts
from workers.sequencer.authz import CommandAuthorizer
from workers.sequencer.decisions import Batch
from workers.sequencer.faults import Faults
from workers.sequencer.health import STATUS
from workers.sequencer.publishing import Publisher
from workers.sequencer.state_cache import StateCache, load_refs

log = structlog.get_logger("opsml.sequencer")

_FROZEN = [False]  # gc.freeze() once per process, not on every supervised restart


class BatchPipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        conn: asyncpg.Connection,
        read_conn: asyncpg.Connection | None,
        epoch: int,
        states: StateCache,
        publisher: Publisher,
        artifacts: Artifacts,
        authz: CommandAuthorizer | None,
        faults: Faults,
    ) -> None:
        self.s = settings
        self.conn = conn  # holds the sequencer lock: every write goes through it
        # A second connection for the next batch's outcome check while the previous batch is
        # still being projected on `conn` (None: one batch at a time).
        self.read_conn = read_conn
        self.epoch = epoch
        self.states = states
        self.publisher = publisher
        self.artifacts = artifacts
        self.authz = authz
        self.faults = faults
        self._pending: asyncio.Task[None] | None = None  # the previous batch's projection
        self._inflight_ids: set[UUID] = set()  # that batch's command ids

    @property
    def projecting(self) -> asyncio.Task[None] | None:
        """The previous batch's projection, while it has not been drained."""
        return self._pending

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Read and process commands from the tracked position until `stop` is set."""
        tracking = await get_tracking(self.conn, self.s.worker_name)
        assert tracking is not None
        commands = TopicPartition(self.s.commands_topic, 0)
        consumer = kafka.commands_reader(self.s)
        await consumer.start()
        try:
            consumer.assign([commands])
            # the wait follows the load (and, on Tansu, the broker's cost of reading its log)
            pace = FetchPace(
                consumer, idle_ms=self.s.kafka_fetch_max_wait_ms,
                busy_ms=self.s.kafka_fetch_max_wait_busy_ms, window_s=self.s.worker_busy_window_s,
            )  # fmt: skip
            reader = ContiguousReader(consumer, commands, tracking.command_offset + 1, pace=pace)
            ready.set()
            STATUS.set("active")
            if not _FROZEN[0]:
                # long-lived start-up objects out of the collector's sight (see workers/api/app.py)
                _FROZEN[0] = True
                gc.collect()
                gc.freeze()
            log.info("consuming commands", from_offset=reader.position)
            while not stop.is_set():
                try:
                    records = await reader.read(timeout_ms=500, max_records=self.s.worker_batch_max)
                except OffsetOutOfRangeError as exc:
                    raise BrokerDataLost(
                        f"{self.s.commands_topic} has no offset {reader.position}, which this"
                        " registry already processed up to: the broker lost its data. Restore"
                        " the broker, or republish the log with `opsml replay --republish`"
                        " (docs/events.md)",
                        address=self.s.kafka_bootstrap_servers,
                    ) from exc
                # metrics, once per read (a batch, or at most every 0.5 s while idle)
                metrics.LOOP_AT.set(time.time())
                high = consumer.highwater(commands)
                if high is not None:  # log end minus what is read
                    metrics.COMMANDS_LAG.set(max(0, high - reader.position))
                if records:
                    await self.process(records)
                elif self._pending is not None:
                    await self.drain()  # quiet: finish the last batch's projection now
                else:
                    self.check_connections()
        finally:
            try:
                await self.drain()
            finally:
                await consumer.stop()

    def check_connections(self) -> None:
        """While no commands come, the sequencer runs no query: without this check it would
        not see its connection die until the next command. But that connection holds the
        advisory lock (a standby may be taking over), and the server it died with may have lost
        the last commits: a crash of a Postgres running with synchronous_commit=off, or a
        failover to an asynchronous replica, keeps the events in Kafka and drops their
        projection, so the clients waiting for those outcomes never see them. Ending the run
        here (a transient error: the supervisor starts a fresh sequencer) re-takes the lock and
        catches up from the log, which projects whatever the crash dropped (docs/reliability.md,
        bug 21). asyncpg marks a connection closed as soon as the server closes the socket, so
        this costs no round trip."""
        for conn in (self.conn, self.read_conn):
            if conn is not None and conn.is_closed():
                raise asyncpg.InterfaceError(
                    "the sequencer's database connection was closed while it was idle"
                )

    async def drain(self) -> None:
        """Wait for the previous batch's projection; raises what it raised (e.g. Fenced)."""
        task, self._pending = self._pending, None
        self._inflight_ids = set()
        if task is not None:
            await task

    # ---- one batch ------------------------------------------------------------------------------

    async def process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        batch = decisions.read(records, self.s.max_command_bytes)
        cut = batch.dependent_at()
        if cut is not None:
            await self.process(records[:cut])
            await self.process(records[cut:])
            return
        metrics.BATCH_SIZE.observe(len(records))
        # The previous batch may still be being projected (on `conn`). This batch is decided
        # meanwhile only when all it reads is the outcome check (on `read_conn`, which sees the
        # committed outcomes; the previous batch's own ids are added from memory) and tokens:
        # names already in the state cache (the previous batch's registrations are in it), no
        # card records (updates, deletes, lineage) and no artifacts, whose rows that projection
        # may be writing. Otherwise it waits for that projection first, as before. Either way
        # nothing of this batch is published before the previous one is committed, so at most
        # one batch is ever published and not projected - what catch-up handles after a crash.
        overlap = (
            self._pending is not None
            and self.read_conn is not None
            and not batch.wanted
            and not batch.with_files
            and not batch.alias_keys  # (their aliases may need loading on self.conn)
            and all(k in self.states for k in batch.keys)
        )
        if not overlap:
            waiting = time.perf_counter()
            await self.drain()
            started += time.perf_counter() - waiting  # that wait is the previous batch's
        conn = self.read_conn if overlap else self.conn
        assert conn is not None
        unique = set(batch.ids)
        known = {r["command_id"] for r in await conn.fetch(Q["known_outcomes"], list(unique))}
        known |= self._inflight_ids & unique
        await self.states.load(self.conn, batch.keys, batch.alias_keys)
        refs = await load_refs(self.conn, batch.wanted)
        checked = time.perf_counter()
        sources, refused = await self.artifacts.check(batch.with_files)
        artifacts_s = time.perf_counter() - checked
        if self.authz is not None:
            triples = list(zip(records, batch.items, batch.ids, strict=True))
            # access control's verdict stands before the artifacts'
            refused.update(await self.authz.denied(conn, triples))

        events, duplicates = decisions.decide(
            batch, known=known, refused=refused, states=self.states, refs=refs, epoch=self.epoch
        )
        events = self.faults.decided(events)
        events, payloads = decisions.encoded(events, self.states, self.epoch)
        decided = time.perf_counter()
        # Artifacts are in place (and card.json beside them) before any event points at them.
        await self.artifacts.finalize(events, sources)
        finalized = time.perf_counter()
        metrics.DECIDE.observe(decided - started - artifacts_s)
        metrics.ARTIFACTS.observe(finalized - decided + artifacts_s)
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)

        await self.drain()  # the previous batch is committed before this one is published
        logged: list[LoggedEvent] = []
        copies = False
        if events:
            await self.faults.before_publish(events, payloads, self.publisher.publish_one)
            publishing = time.perf_counter()
            offsets = await self.publisher.publish(events, payloads)
            logged = [
                LoggedEvent(offset, ev, True, payload)
                for offset, ev, payload in zip(offsets, events, payloads, strict=True)
            ]
            logged, copies = await self.publisher.fill_gaps(logged, self.epoch)
            metrics.PUBLISH.observe(time.perf_counter() - publishing)
            metrics.PROJECTION_LAG.set(len(logged))
            self.faults.after_publish()
        self._pending = asyncio.create_task(
            self._project(batch, events, logged, copies, duplicates)
        )
        self._inflight_ids = unique
        if self.read_conn is None:
            await self.drain()  # no pipeline: one batch at a time

    async def _project(
        self,
        batch: Batch,
        events: list[Event],
        logged: list[LoggedEvent],
        copies: bool,
        duplicates: int,
    ) -> None:
        projecting = time.perf_counter()
        found = await project(
            self.conn,
            tracking_name=self.s.worker_name,
            epoch=self.epoch,
            events=sorted(logged, key=lambda e: e.offset),
            command_offset=batch.records[-1].offset,
            # the batch's own decisions were checked against command_outcomes at the top of the
            # batch; records found in the log besides them are checked by project()
            fresh_decisions=not copies,
            on_unstorable=self._answer_set_aside,
        )
        metrics.PROJECT.observe(time.perf_counter() - projecting)
        metrics.PROJECTION_LAG.set(0)
        if found:
            await self.artifacts.discard_files_of(found)
        self.artifacts.clean_after_commit(batch.with_files, events)
        registered = sum(isinstance(e, CardRegistered) for e in events)
        unstored = sum(1 for f in found if f.decided and isinstance(f.item.event, CardRegistered))
        self._count(batch, events, found)
        log.info(
            "batch projected",
            commands=len(batch.records),
            registered=registered - unstored,
            rejected=len(events) - registered + unstored,
            duplicates=duplicates,
            set_aside=len(found),
            last_offset=batch.records[-1].offset,
        )

    @staticmethod
    def _count(batch: Batch, events: list[Event], found: list[SetAside]) -> None:
        """The committed batch's metrics: outcomes (one `inc` per label set) and the
        end-to-end latency of its registrations."""
        set_aside = {f.item.event.command_id for f in found if f.decided}
        metrics.count_outcomes(events, set_aside)
        registered = {
            e.command_id
            for e in events
            if isinstance(e, CardRegistered) and e.command_id not in set_aside
        }
        if registered:
            metrics.observe_registrations(
                item.issued_at
                for item in batch.items
                if isinstance(item, RegisterCard) and item.command_id in registered
            )

    async def _answer_set_aside(self, items: list[SetAside]) -> list[LoggedEvent]:
        """project()'s hook in the live batch, inside its transaction: publish a rejection for
        every command whose decision the tables refused, behind the batch's events (nothing
        else is published before this batch commits), and hand their events back to be written
        in the same transaction. A crash before the commit leaves the answers in the log for
        the catch-up; a crash before they are published leaves the catch-up to answer."""
        for item in items:
            if item.decided:
                self.states.give_back(item.item.event)
        answers = isolation.answers(items, epoch=self.epoch, now=datetime.now(UTC))
        logged = await self.publisher.answers(answers)
        if logged:
            logged, _ = await self.publisher.fill_gaps(logged, self.epoch)
        return logged
