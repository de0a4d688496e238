"""The sequencer worker: the only writer of versions.

Batch loop: consume commands -> validate -> de-duplicate by command_id -> decide -> publish events
(await acks) -> ONE Postgres transaction (read tables, event archive, outcomes, tracking, NOTIFY).
Offsets live in Postgres (the partition is assigned, not group-managed), so the command position
and the projection always commit together. See docs/architecture.md for the exactly-once argument.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import asyncpg
import orjson
import semver
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from registry_core.contracts.codec import UndecodableCommand, decode_command, decode_event, encode
from registry_core.domain.artifacts import card_prefix, staging_prefix
from registry_core.domain.cards import CardRecord, RegistryType, card_key
from registry_core.domain.commands import AnyCommand, RegisterCard
from registry_core.domain.decider import (
    INITIAL_STATE,
    Context,
    NameState,
    handle,
    referenced_uids,
    reject,
    remember,
)
from registry_core.domain.errors import InvalidArtifact, RegistryError, clip
from registry_core.domain.events import (
    OPSML_NAMESPACE,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    SequencerStarted,
    event_id_for,
)
from registry_core.domain.versioning import latest
from registry_core.messaging import ContiguousReader, FetchPace, ensure_topics
from registry_core.persistence import db
from registry_core.persistence.db import LOCK_NAMESPACE, SEQUENCER_LOCK, Q
from registry_core.persistence.projection import (
    LoggedEvent,
    claim_epoch,
    get_tracking,
    project,
)
from registry_core.persistence.projection import Unstorable as SetAside
from registry_core.persistence.read import record_from_row
from registry_core.settings import Settings
from registry_core.storage import ArtifactStore, open_store
from registry_core.storage.base import hash_of
from workers.sequencer import isolation
from workers.sequencer.authz import CommandAuthorizer

log = structlog.get_logger("opsml.sequencer")

_ONCE = [False, False]  # once per process: [open-commands warning, gc.freeze()]
CATCH_UP_CHUNK = 2000
STATE_CACHE_MAX = 200_000
EVENT_BATCH_BYTES = 512 * 1024


# Version strings repeat across names ("1.3.0" in every name): parse each once. semver's
# Version is immutable, so the cached objects can be shared by every name's state.
_parse_version = functools.lru_cache(maxsize=65_536)(semver.Version.parse)


def _info_enabled() -> bool:
    """Would log.info write anything (structlog's filtering loggers answer without work)?"""
    enabled = getattr(log, "is_enabled_for", None)
    return True if enabled is None else bool(enabled(logging.INFO))


def _now() -> datetime:
    return datetime.now(UTC)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


_OUTCOME_TYPES = frozenset(("card_registered", "card_updated", "card_deleted", "command_rejected"))


def _outcome_event(event: Event) -> bool:
    return isinstance(event, CardRegistered | CardUpdated | CardDeleted | CommandRejected)


def _event_key(event: Event) -> bytes | None:
    if isinstance(event, CardRegistered):
        return event.card.key.encode()
    reg, space, name = (getattr(event, k, None) for k in ("registry", "space", "name"))
    if reg and space and name:
        return card_key(reg, space, name).encode()
    return None


class Sequencer:
    def __init__(self, settings: Settings, *, fault: str | None = None) -> None:
        self.s = settings
        # Fault injection for the crash tests: "after-publish" SIGKILLs this process after the
        # events are acknowledged by Kafka and before the projection commits.
        self.fault = fault if fault is not None else os.environ.get("OPSML_FAULT_INJECT")
        self.conn: asyncpg.Connection | None = None
        # A second connection for the next batch's outcome check while the previous batch is
        # still being projected on `conn` (settings.worker_pipeline; see process()).
        self.read_conn: asyncpg.Connection | None = None
        self._pending: asyncio.Task[None] | None = None  # the previous batch's projection
        self._inflight_ids: set[UUID] = set()  # that batch's command ids
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.epoch = 0
        self.states: dict[str, NameState] = {}
        self.commands_tp = TopicPartition(settings.commands_topic, 0)
        self.events_tp = TopicPartition(settings.events_topic, 0)
        self.ready = asyncio.Event()  # set once the sequencer is active (lock held, caught up)
        self.store: ArtifactStore = open_store(
            settings.storage_uri,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        )
        self._cleanup: set[asyncio.Task[None]] = set()
        # The offset the next event this sequencer publishes should get (after its marker).
        self.next_event_offset = -1
        # Access control (docs/security.md): raises at start for an unsafe configuration.
        key = settings.grant_key_bytes() if settings.auth_required() else None
        self.authz = CommandAuthorizer(key, settings.token_cache_seconds) if key else None
        if self.authz is None and not _ONCE[0]:
            _ONCE[0] = True  # once per process, not on every supervised restart
            log.warning(
                "commands are not authenticated (OPSML_GRANT_KEY is not set): anyone who can"
                " write to the commands topic can register cards; fine on loopback only"
            )

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        s = self.s
        await ensure_topics(
            s.kafka_bootstrap_servers,
            [s.commands_topic, s.events_topic],
            client_kwargs=s.kafka_client_kwargs(),
        )
        # Every write goes through the connection that holds the advisory lock: if it dies, the
        # lock is gone AND so is this worker's ability to commit.
        self.conn = await db.connect(s.dsn)
        try:
            await db.keep_alive(self.conn)
            await db.migrate(self.conn)
            if not await self._acquire_lock(stop):
                return
            if s.worker_pipeline:
                self.read_conn = await db.connect(s.dsn)
                await db.keep_alive(self.read_conn)
            self.producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap_servers,
                acks="all",
                enable_idempotence=False,  # not supported by Tansu; not needed (see docs)
                linger_ms=0,
                # A batch's events go out as one record batch, so one produce round trip
                # (aiokafka sends one request at a time per broker, with one record batch per
                # partition): up to 512 KiB rather than 16 KiB.
                max_batch_size=EVENT_BATCH_BYTES,
                max_request_size=max(s.max_command_bytes * 2, 1_048_576),
                request_timeout_ms=s.kafka_request_timeout_ms,
                **s.kafka_client_kwargs(),
            )
            await self.producer.start()
            try:
                await self._start_epoch()
                await self._consume(stop)
            finally:
                await self.producer.stop()
        finally:
            if self.read_conn is not None:
                await self.read_conn.close()
            await self.conn.close()
            await asyncio.gather(*self._cleanup, return_exceptions=True)
            await self.store.close()

    def _consumer(self, **extra: Any) -> AIOKafkaConsumer:
        """A partition reader with offsets kept by us (no group, no auto commit) that never
        jumps silently: a position outside the log is an error, not a reset."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="none",
            fetch_max_wait_ms=self.s.kafka_fetch_max_wait_ms,
            request_timeout_ms=self.s.kafka_request_timeout_ms,
            **extra,
            **self.s.kafka_client_kwargs(),
        )

    async def _acquire_lock(self, stop: asyncio.Event) -> bool:
        assert self.conn is not None
        announced = False
        while not stop.is_set():
            got = await self.conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", LOCK_NAMESPACE, SEQUENCER_LOCK
            )
            if got:
                log.info("sequencer lock acquired: active")
                return True
            if not announced:
                log.info("another sequencer holds the lock: waiting as hot standby")
                announced = True
            try:
                await asyncio.wait_for(stop.wait(), self.s.lock_retry_seconds)
            except TimeoutError:
                pass
        return False

    async def _start_epoch(self) -> None:
        """Claim a new epoch, publish its marker, and project every event up to the marker:
        events published before a crash but never projected, including any from a fenced-off
        predecessor that published just before we started."""
        assert self.conn is not None and self.producer is not None
        await self._refuse_if_log_lost()
        tracking = await claim_epoch(self.conn, self.s.worker_name)
        self.epoch = tracking.claimed_epoch
        structlog.contextvars.bind_contextvars(epoch=self.epoch)
        marker_cid = uuid5(OPSML_NAMESPACE, f"epoch:{self.s.events_topic}:{self.epoch}")
        marker = SequencerStarted(
            event_id=event_id_for(marker_cid, self.epoch),
            command_id=marker_cid,
            occurred_at=_now(),
            epoch=self.epoch,
        )
        md = await self.producer.send_and_wait(self.s.events_topic, encode(marker), partition=0)
        last = await self._catch_up(tracking.event_offset + 1, md.offset, tracking.max_epoch)
        log.info("caught up", marker_offset=md.offset, last_offset=last)
        self.next_event_offset = last + 1

    async def _refuse_if_log_lost(self) -> None:
        """Stop before claiming an epoch when the events topic ends below the tracked offset: a
        broker that lost its data would hand out offsets already in event_log (the next batch
        would collide with the archive) and the catch-up would silently find nothing to do."""
        assert self.conn is not None
        tracking = await get_tracking(self.conn, self.s.worker_name)
        if tracking is None or tracking.event_offset < 0:
            return
        consumer = self._consumer()
        await consumer.start()
        high_water: int | None = None
        try:
            consumer.assign([self.events_tp])
            # Probe the last projected offset; Tansu answers ListOffsets "latest" wrongly, so the
            # high-water mark comes from a fetch response.
            consumer.seek(self.events_tp, tracking.event_offset)
            for _ in range(100):
                try:
                    await consumer.getmany(self.events_tp, timeout_ms=100, max_records=1)
                except OffsetOutOfRangeError:
                    high_water = 0
                    break
                high_water = consumer.highwater(self.events_tp)
                if high_water is not None:
                    break
        finally:
            await consumer.stop()
        if high_water is not None and high_water < tracking.event_offset + 1:
            raise RuntimeError(
                f"{self.s.events_topic} ends below offset {tracking.event_offset}, which this"
                " registry already projected: the broker lost its data. Stop every worker and run"
                " `opsml replay --republish` to write the Postgres archive back, then start the"
                " worker again (see docs/events.md)"
            )

    async def _catch_up(self, start: int, end: int, max_epoch: int) -> int:
        """Project events [start, end] from the log (not re-deciding anything). Returns the last
        offset projected: past `end` when a command had to be answered on the way - its
        decision cannot be stored or read back (see workers/sequencer/isolation.py) - because
        those answers are published behind the marker and projected here too, in another pass
        from a fresh reader (so nothing between the marker and them is skipped)."""
        while start <= end:
            published, max_epoch = await self._catch_up_range(start, end, max_epoch)
            if published <= end:
                break
            start, end = end + 1, published
        return end

    async def _catch_up_range(self, start: int, end: int, max_epoch: int) -> tuple[int, int]:
        """One pass of `_catch_up`; returns the last offset it published answers at (or -1) and
        the epoch rule's running maximum."""
        published = -1

        async def answer(items: list[SetAside]) -> list[LoggedEvent]:
            # in project()'s transaction: published before the chunk's offsets commit
            nonlocal published
            for item in items:
                if item.decided:
                    self._forget(item.item.event)
            sent = await self._publish_answers(
                isolation.answers(items, epoch=self.epoch, now=_now())
            )
            published = max([published, *(e.offset for e in sent)])
            return []

        consumer = self._consumer()
        await consumer.start()
        projected = 0
        try:
            consumer.assign([self.events_tp])
            reader = ContiguousReader(consumer, self.events_tp, start)
            while reader.position <= end:
                records = await reader.read(timeout_ms=1000, max_records=CATCH_UP_CHUNK)
                batch: list[LoggedEvent] = []
                unread: list[tuple[ConsumerRecord, int]] = []  # (and the epoch rule's maximum)
                for rec in records:
                    if rec.offset > end:
                        break
                    try:
                        event = decode_event(rec.value or b"{}")
                    except Exception:
                        log.exception("skipping an undecodable event in the log", offset=rec.offset)
                        unread.append((rec, max_epoch))
                        continue
                    applied = event.epoch >= max_epoch
                    if applied:
                        max_epoch = max(max_epoch, event.epoch)
                        self._evolve_cached(event)
                    batch.append(LoggedEvent(rec.offset, event, applied))
                if unread:
                    sent = await self._answer_unreadable(unread, batch)
                    published = max([published, *(e.offset for e in sent)])
                if batch:
                    found = await project(
                        self.conn, tracking_name=self.s.worker_name, epoch=self.epoch,
                        events=batch, on_unstorable=answer,
                    )  # fmt: skip
                    await self._discard_files_of(found)
                    projected += len(batch)
        finally:
            await consumer.stop()
        log.info("projected unprojected events from the log", count=projected, start=start, end=end)
        return published, max_epoch

    async def _answer_unreadable(
        self, records: list[tuple[ConsumerRecord, int]], batch: list[LoggedEvent]
    ) -> list[LoggedEvent]:
        """Catch-up skips an event it cannot decode (so does a replay). If that event was a
        command's decision - a predecessor published it and died before projecting it - the
        command would never get an outcome: answer it with a rejection, unless the command
        already has one or a later event of the chunk gives one."""
        answered_later = {
            e.event.command_id: e.offset for e in batch if _outcome_event(e.event) and e.applied
        }
        wanted: dict[UUID, tuple[int | None, str]] = {}
        for rec, max_epoch in records:
            try:
                data = orjson.loads(rec.value or b"{}")
                kind = data["type"]
                cid = UUID(str(data["command_id"]))
                epoch = data.get("epoch")
            except Exception:
                continue  # nothing says which command it answered
            if not isinstance(kind, str) or kind not in _OUTCOME_TYPES:
                continue
            if data.get("error_code") == isolation.Unstorable.code:
                continue
            if not isinstance(epoch, int) or epoch < max_epoch:
                continue  # a fenced sequencer's event: it decided nothing
            if answered_later.get(cid, -1) > rec.offset:
                continue
            cmd = data.get("command_offset")
            wanted[cid] = (cmd if isinstance(cmd, int) else None, kind)
        if not wanted:
            return []
        assert self.conn is not None
        known = {r["command_id"] for r in await self.conn.fetch(Q["known_outcomes"], list(wanted))}
        now = _now()
        return await self._publish_answers(
            [
                isolation.answer(
                    cid,
                    f"its decision ({kind}) in the events log cannot be read back",
                    epoch=self.epoch,
                    now=now,
                    command_offset=cmd,
                )
                for cid, (cmd, kind) in wanted.items()
                if cid not in known
            ]
        )

    async def _publish_answers(self, answers: list[CommandRejected]) -> list[LoggedEvent]:
        """Publish rejections for commands whose decision cannot be stored (or read back)."""
        if not answers:
            return []
        payloads = [encode(a) for a in answers]
        offsets = await self._publish(list(answers), payloads)
        for a, offset in zip(answers, offsets, strict=True):
            log.warning(
                "command rejected: its decision cannot be stored", command_id=str(a.command_id),
                offset=offset, reason=a.reason,
            )  # fmt: skip
        return [
            LoggedEvent(offset, a, True, payload)
            for offset, a, payload in zip(offsets, answers, payloads, strict=True)
        ]

    def _forget(self, event: Event) -> None:
        """Take back from the state cache the version of a registration that was never stored
        (a decision the tables refused, answered by a rejection): the cache must not hold a
        version the database does not. In place of the name's state, never removing it: a
        batch decided meanwhile (pipelined) must not find the name unknown."""
        if not isinstance(event, CardRegistered):
            return
        key, version = event.card.key, event.card.version
        state = self.states.get(key)
        if state is None or version not in state.versions:
            return
        versions = set(state.versions)
        versions.discard(version)
        self.states[key] = NameState(versions, latest(versions))

    async def _discard_files_of(self, found: list[SetAside]) -> None:
        """Remove what `_finalize` placed for registrations that were never stored, so that the
        version's directory is empty when the version is given out again."""
        for item in found:
            ev = item.item.event
            if not (item.decided and isinstance(ev, CardRegistered) and ev.card.artifacts):
                continue
            c = ev.card
            prefix = card_prefix(c.registry.value, c.space, c.name, c.version)
            try:
                await self.store.delete_prefix(prefix)
            except Exception as exc:  # storage hiccups must not hurt the sequencer
                log.warning("artifact clean-up failed", prefix=prefix, error=str(exc))

    # ---- the batch loop --------------------------------------------------------------------

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.conn is not None
        tracking = await get_tracking(self.conn, self.s.worker_name)
        assert tracking is not None
        self.consumer = self._consumer(
            max_partition_fetch_bytes=max(self.s.max_command_bytes * 2, 1_048_576),
            fetch_max_bytes=max(self.s.max_command_bytes * 4, 52_428_800),
        )
        await self.consumer.start()
        try:
            self.consumer.assign([self.commands_tp])
            reader = ContiguousReader(self.consumer, self.commands_tp, tracking.command_offset + 1)
            self.ready.set()
            if not _ONCE[1]:
                # long-lived start-up objects out of the collector's sight (see workers/api/app.py)
                _ONCE[1] = True
                gc.collect()
                gc.freeze()
            log.info("consuming commands", from_offset=reader.position)
            pace = FetchPace(
                self.consumer,
                idle_ms=self.s.kafka_fetch_max_wait_ms,
                busy_ms=self.s.kafka_fetch_max_wait_busy_ms,
                window_s=self.s.worker_busy_window_s,
            )
            while not stop.is_set():
                try:
                    records = await reader.read(timeout_ms=500, max_records=self.s.worker_batch_max)
                except OffsetOutOfRangeError as exc:
                    raise RuntimeError(
                        f"{self.s.commands_topic} has no offset {reader.position}, which this"
                        " registry already processed up to: the broker lost its data. Restore"
                        " the broker, or republish the log with `opsml replay --republish`"
                        " (docs/events.md)"
                    ) from exc
                pace.saw(len(records))
                if records:
                    await self.process(records)
                elif self._pending is not None:
                    await self._drain()  # quiet: finish the last batch's projection now
                else:
                    self._check_connections()
        finally:
            try:
                await self._drain()
            finally:
                await self.consumer.stop()

    def _check_connections(self) -> None:
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

    async def _drain(self) -> None:
        """Wait for the previous batch's projection; raises what it raised (e.g. Fenced)."""
        task, self._pending = self._pending, None
        self._inflight_ids = set()
        if task is not None:
            await task

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        assert self.conn is not None and self.producer is not None
        decoded = [
            (rec, decode_command(rec.value, max_bytes=self.s.max_command_bytes)) for rec in records
        ]
        ids = [self._command_id(rec, item) for rec, item in decoded]
        keys = {item.key for _, item in decoded if isinstance(item, RegisterCard)}
        wanted = {
            uid
            for _, item in decoded
            if not isinstance(item, UndecodableCommand)
            for uid in referenced_uids(item)
        }
        with_files = [
            item for _, item in decoded if isinstance(item, RegisterCard) and item.artifacts
        ]
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
            and not wanted
            and not with_files
            and all(k in self.states for k in keys)
        )
        if not overlap:
            await self._drain()
        conn = self.read_conn if overlap else self.conn
        assert conn is not None
        unique = set(ids)
        known = {r["command_id"] for r in await conn.fetch(Q["known_outcomes"], list(unique))}
        known |= self._inflight_ids & unique
        await self._load_states(keys)
        refs = await self._load_refs(wanted)
        sources = await self._check_artifacts(with_files)
        denied = {}
        if self.authz is not None:
            triples = [(r, i, c) for (r, i), c in zip(decoded, ids, strict=True)]
            denied = await self.authz.denied(conn, triples)

        events: list[Event] = []
        verbose = _info_enabled()
        seen: set[UUID] = set()
        duplicates = 0
        for (rec, item), cid in zip(decoded, ids, strict=True):
            if cid in known or cid in seen:
                duplicates += 1  # redelivered: its first outcome stands and is already stored
                continue
            seen.add(cid)
            ctx = Context(now=_now(), epoch=self.epoch, command_offset=rec.offset)
            refused = denied.get(cid)
            if refused is not None and not isinstance(item, UndecodableCommand):
                events.append(
                    reject(cid, refused, ctx, registry=item.registry, space=item.space,
                           name=item.name)
                )  # fmt: skip
                continue
            found = sources.get(cid)
            if isinstance(found, InvalidArtifact) and isinstance(item, RegisterCard):
                log.info("command rejected", command_id=str(cid), reason=found.message)
                events.append(
                    reject(
                        cid, found, ctx, registry=item.registry, space=item.space, name=item.name
                    )
                )
                continue
            events.extend(self._decide_one(item, cid, ctx, refs, verbose))

        # once: the same JSON to Kafka and the archive
        events, payloads = self._encoded(events)
        # Artifacts are in place (and card.json beside them) before any event points at them.
        await self._finalize(
            [e for e in events if isinstance(e, CardRegistered) and e.card.artifacts], sources
        )

        await self._drain()  # the previous batch is committed before this one is published
        if events:
            if self.fault == "duplicate-publish":
                # what a produce retried across a broker failure leaves: an unacknowledged
                # first copy of an event before the acknowledged one
                log.warning("fault injection: an extra copy of the batch's first event")
                await self.producer.send_and_wait(
                    self.s.events_topic, payloads[0], key=_event_key(events[0]), partition=0
                )
            offsets = await self._publish(events, payloads)
            logged = [
                LoggedEvent(offset, ev, True, payload)
                for offset, ev, payload in zip(offsets, events, payloads, strict=True)
            ]
            logged, copies = await self._with_unacknowledged_copies(logged)
        else:
            logged, copies = [], False
        if self.fault == "after-publish" and events:
            log.warning("fault injection: SIGKILL after publishing, before projecting")
            os.kill(os.getpid(), signal.SIGKILL)
        self._pending = asyncio.create_task(
            self._project(records, decoded, events, logged, copies, duplicates)
        )
        self._inflight_ids = unique
        if self.read_conn is None:
            await self._drain()  # no pipeline: one batch at a time

    async def _project(
        self,
        records: Sequence[ConsumerRecord],
        decoded: list[Any],
        events: list[Event],
        logged: list[LoggedEvent],
        copies: bool,
        duplicates: int,
    ) -> None:
        assert self.conn is not None
        found = await project(
            self.conn,
            tracking_name=self.s.worker_name,
            epoch=self.epoch,
            events=sorted(logged, key=lambda e: e.offset),
            command_offset=records[-1].offset,
            # the batch's own decisions were checked against command_outcomes at the top of the
            # batch; records found in the log besides them are checked by project()
            fresh_decisions=not copies,
            on_unstorable=self._answer_set_aside,
        )
        if found:
            await self._discard_files_of(found)
        self._after_commit(decoded, events)
        registered = sum(isinstance(e, CardRegistered) for e in events)
        unstored = sum(1 for f in found if f.decided and isinstance(f.item.event, CardRegistered))
        log.info(
            "batch projected",
            commands=len(records),
            registered=registered - unstored,
            rejected=len(events) - registered + unstored,
            duplicates=duplicates,
            set_aside=len(found),
            last_offset=records[-1].offset,
        )

    async def _answer_set_aside(self, items: list[SetAside]) -> list[LoggedEvent]:
        """project()'s hook in the live batch, inside its transaction: publish a rejection for
        every command whose decision the tables refused, behind the batch's events (nothing
        else is published before this batch commits), and hand their events back to be written
        in the same transaction. A crash before the commit leaves the answers in the log for
        the catch-up; a crash before they are published leaves the catch-up to answer."""
        for item in items:
            if item.decided:
                self._forget(item.item.event)
        logged = await self._publish_answers(isolation.answers(items, epoch=self.epoch, now=_now()))
        if logged:
            logged, _ = await self._with_unacknowledged_copies(logged)
        return logged

    async def _publish(self, events: list[Event], payloads: list[bytes]) -> list[int]:
        """Publish the batch's events in order and return each one's offset once Kafka has
        acknowledged all of them.

        The records go straight into record batches (`create_batch` / `send_batch`) instead of
        one `send()` each, which costs a future, a coroutine and the accumulator's bookkeeping
        per record. A batch's records get consecutive offsets from its base offset, the same
        arithmetic aiokafka applies to the futures of `send()`; batches are queued in order on
        the one partition (each waits for the previous one to drain), and the producer retries
        a failed batch as it would retry `send()`'s."""
        assert self.producer is not None
        topic = self.s.events_topic
        sent: list[tuple[asyncio.Future[Any], list[int]]] = []
        batch = self.producer.create_batch()
        relative: list[int] = []
        for ev, payload in zip(events, payloads, strict=True):
            key = _event_key(ev)
            meta = batch.append(key=key, value=payload, timestamp=None)
            if meta is None:  # full: queue it, start the next (an empty batch takes any record)
                sent.append((await self.producer.send_batch(batch, topic, partition=0), relative))
                batch, relative = self.producer.create_batch(), []
                meta = batch.append(key=key, value=payload, timestamp=None)
                assert meta is not None
            relative.append(meta.offset)
        if relative:
            sent.append((await self.producer.send_batch(batch, topic, partition=0), relative))
        acked = await asyncio.gather(*(future for future, _ in sent))
        return [md.offset + r for md, (_, rel) in zip(acked, sent, strict=True) for r in rel]

    async def _with_unacknowledged_copies(
        self, logged: list[LoggedEvent]
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
        as in catch-up."""
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
        extra: list[LoggedEvent] = []
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign([self.events_tp])
            consumer.seek(self.events_tp, min(holes))
            position, deadline = min(holes), time.monotonic() + 10
            # a hole may be a missing offset (Tansu can skip one when it dies): read until past
            # the last hole or give up on what never appears
            while position <= max(holes) and time.monotonic() < deadline:
                got = await consumer.getmany(self.events_tp, timeout_ms=500)
                for rec in got.get(self.events_tp, []):
                    position = max(position, rec.offset + 1)
                    if rec.offset not in holes or rec.value is None:
                        continue
                    try:
                        event = decode_event(rec.value)
                    except Exception:
                        log.exception("skipping an undecodable event in the log", offset=rec.offset)
                        continue
                    extra.append(
                        LoggedEvent(
                            rec.offset, event, event.epoch >= self.epoch, rec.value.decode()
                        )
                    )
        finally:
            await consumer.stop()
        return sorted([*logged, *extra], key=lambda e: e.offset), bool(extra)

    def _encoded(self, events: list[Event]) -> tuple[list[Event], list[bytes]]:
        """The events and their JSON. A decision the encoder refuses (a value the models let
        through that JSON cannot carry) becomes its command's rejection here, before anything
        is published, rather than an exception that would stop the worker on every restart."""
        try:
            return events, [encode(ev) for ev in events]
        except Exception:
            pass
        out: list[Event] = []
        payloads: list[bytes] = []
        for ev in events:
            try:
                payload = encode(ev)
            except Exception as exc:
                log.exception("a decision cannot be encoded", command_id=str(ev.command_id))
                self._forget(ev)
                ev = isolation.answer(
                    ev.command_id,
                    f"its decision cannot be written to the events log ({clip(repr(exc))})",
                    epoch=self.epoch,
                    now=_now(),
                    command_offset=ev.command_offset,
                    about=ev,
                )
                payload = encode(ev)
            out.append(ev)
            payloads.append(payload)
        return out, payloads

    def _command_id(self, rec: ConsumerRecord, item: AnyCommand | UndecodableCommand) -> UUID:
        if not isinstance(item, UndecodableCommand):
            return item.command_id
        if item.command_id is not None:
            return item.command_id
        # Nothing to answer to; a stable id keeps the rejection idempotent across redelivery.
        return uuid5(OPSML_NAMESPACE, f"undecodable:{rec.topic}:{rec.partition}:{rec.offset}")

    def _decide_one(
        self,
        item: AnyCommand | UndecodableCommand,
        cid: UUID,
        ctx: Context,
        refs: dict[UUID, CardRecord],
        verbose: bool = True,
    ) -> list[Event]:
        if isinstance(item, UndecodableCommand):
            log.warning(
                "command rejected: undecodable", command_id=str(cid), reason=item.error.message
            )
            where: dict[str, Any] = {"registry": None, "space": None, "name": None}
            if item.registry in RegistryType._value2member_map_:
                where = {
                    "registry": RegistryType(str(item.registry)),
                    "space": item.space,
                    "name": item.name,
                }
            return [reject(cid, item.error, ctx, **where)]
        try:
            state = self.states.get(item.key, INITIAL_STATE)
            events = handle(item, state, refs, ctx)
            if isinstance(item, RegisterCard):
                self._advance(item.key, state, events)
            for ev in events:
                remember(refs, ev)
        except Exception as exc:  # a bug must not turn one message into a stuck worker
            log.exception("command could not be handled", command_id=str(cid))
            error = RegistryError(f"internal error while handling this command: {clip(repr(exc))}")
            return [
                reject(cid, error, ctx, registry=item.registry, space=item.space, name=item.name)
            ]
        if not verbose:
            return events  # (the arguments below cost more than the decision's bookkeeping)
        for ev in events:
            if isinstance(ev, CardRegistered | CardUpdated | CardDeleted):
                log.info(
                    ev.type.replace("_", " "),
                    command_id=str(cid),
                    uid=str(ev.card.uid),
                    name=ev.card.key,
                    version=ev.card.version,
                )
            else:
                log.info("command rejected", command_id=str(cid), reason=getattr(ev, "reason", ""))
        return events

    # ---- artifacts ---------------------------------------------------------------------------

    async def _check_artifacts(
        self, commands: list[RegisterCard]
    ) -> dict[UUID, dict[str, str] | InvalidArtifact]:
        """For each command: where every declared file can be copied from (its staged upload,
        or an identical file the registry already stores in that space), or why not."""
        out: dict[UUID, dict[str, str] | InvalidArtifact] = {}
        for cmd in commands:
            known = {
                r["sha256"]: r["key"]
                for r in await self.conn.fetch(  # type: ignore[union-attr]
                    Q["known_artifacts"],
                    cmd.registry.value,
                    cmd.space,
                    [a.sha256 for a in cmd.artifacts],
                )
            }
            try:
                out[cmd.command_id] = dict(
                    await asyncio.gather(
                        *(self._source_of(cmd, ref, known) for ref in cmd.artifacts)
                    )
                )
            except InvalidArtifact as problem:
                out[cmd.command_id] = problem
        return out

    async def _source_of(
        self, cmd: RegisterCard, ref: Any, known: dict[str, str]
    ) -> tuple[str, str]:
        staged = f"{staging_prefix(cmd.command_id)}/{ref.path}"
        stat = await self.store.stat(staged)
        if stat is not None:
            if stat.size != ref.size:
                raise InvalidArtifact(
                    f"artifact {ref.path}: {stat.size} bytes were uploaded, the command declares"
                    f" {ref.size}"
                )
            sha = stat.sha256 or await hash_of(self.store, staged)
            if sha != ref.sha256:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the uploaded bytes hash to {sha}, the command declares"
                    f" {ref.sha256}"
                )
            return ref.path, staged
        stored = await self.store.stat(known[ref.sha256]) if ref.sha256 in known else None
        if stored is not None:
            # The declaration must match what is stored: the card's manifest is what a download
            # checks against, and the artifacts table feeds later de-duplication.
            if stored.size != ref.size:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the registry already stores this content (sha256"
                    f" {ref.sha256}) as {stored.size} bytes, the command declares {ref.size};"
                    " declare the file's real size"
                )
            if stored.sha256 is not None and stored.sha256 != ref.sha256:
                raise InvalidArtifact(
                    f"artifact {ref.path}: the stored file for sha256 {ref.sha256} hashes to"
                    f" {stored.sha256}; upload the file again"
                )
            return ref.path, known[ref.sha256]
        raise InvalidArtifact(
            f"artifact {ref.path} was not uploaded: no staged file for command {cmd.command_id}"
            f" and no stored file with sha256 {ref.sha256} in {cmd.registry.value}/{cmd.space}"
        )

    async def _finalize(self, events: list[CardRegistered], sources: dict[UUID, Any]) -> None:
        limit = asyncio.Semaphore(8)
        done = 0

        async def place(src: str, dst: str) -> None:
            nonlocal done
            async with limit:
                await self.store.copy(src, dst)
                done += 1
                if self.fault == "mid-finalize":
                    log.warning("fault injection: SIGKILL in the middle of finalizing artifacts")
                    os.kill(os.getpid(), signal.SIGKILL)

        for ev in events:
            c = ev.card
            prefix = card_prefix(c.registry.value, c.space, c.name, c.version)
            paths = sources[ev.command_id]
            await asyncio.gather(*(place(paths[a.path], f"{prefix}/{a.path}") for a in c.artifacts))
            body = orjson.dumps(c.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
            await self.store.put(
                f"{prefix}/card.json",
                _once(body),
                sha256=hashlib.sha256(body).hexdigest(),
                max_bytes=len(body),
            )

    def _after_commit(self, decoded: list[Any], events: list[Event]) -> None:
        """Best-effort clean-up once the batch is committed: staged uploads, and the files of
        deleted cards when OPSML_DELETE_ARTIFACTS is set. Never blocks the batch loop."""
        prefixes = [
            staging_prefix(item.command_id)
            for _, item in decoded
            if isinstance(item, RegisterCard) and item.artifacts
        ]
        if self.s.delete_artifacts:
            prefixes += [
                card_prefix(e.card.registry.value, e.card.space, e.card.name, e.card.version)
                for e in events
                if isinstance(e, CardDeleted) and e.card.artifacts
            ]
        if not prefixes:
            return

        async def clean() -> None:
            for prefix in prefixes:
                try:
                    await self.store.delete_prefix(prefix)
                except Exception as exc:  # storage hiccups must not hurt the sequencer
                    log.warning("artifact clean-up failed", prefix=prefix, error=str(exc))

        task = asyncio.create_task(clean())
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    # ---- per-name state --------------------------------------------------------------------

    async def _load_states(self, keys: set[str]) -> None:
        missing = [k for k in keys if k not in self.states]
        if not missing:
            return
        if len(self.states) + len(missing) > STATE_CACHE_MAX:
            self.states.clear()  # the database is the source of truth; the cache is only speed
        parts = [k.split("/", 2) for k in missing]
        rows = await self.conn.fetch(  # type: ignore[union-attr]
            Q["versions_for_keys"],
            [p[0] for p in parts],
            [p[1] for p in parts],
            [p[2] for p in parts],
        )
        versions: dict[str, set[str]] = {k: set() for k in missing}
        for r in rows:
            versions[card_key(r["registry"], r["space"], r["name"])].add(r["version"])
        for k, vs in versions.items():
            self.states[k] = NameState(vs, latest(vs))

    def _advance(self, key: str, state: NameState, events: list[Event]) -> None:
        """`evolve`, in place: the cache owns its version sets, so a registration costs O(1)
        instead of copying the name's whole history."""
        versions = state.versions if isinstance(state.versions, set) else set(state.versions)
        newest = state.newest
        for ev in events:
            if isinstance(ev, CardRegistered):
                versions.add(ev.card.version)
                v = _parse_version(ev.card.version)
                if newest is None:
                    newest = v
                elif v.prerelease is None and newest.prerelease is None:
                    # releases: precedence is the numbers (build metadata does not count)
                    if (v.major, v.minor, v.patch) > (newest.major, newest.minor, newest.patch):
                        newest = v
                elif v > newest:
                    newest = v
        self.states[key] = NameState(versions, newest)

    async def _load_refs(self, uids: set[UUID]) -> dict[UUID, CardRecord]:
        """The records of the cards this batch's commands point at (update/delete targets,
        lineage references)."""
        if not uids:
            return {}
        rows = await self.conn.fetch(Q["get_cards"], list(uids))  # type: ignore[union-attr]
        return {r["uid"]: record_from_row(r) for r in rows}

    def _evolve_cached(self, event: Event) -> None:
        # Catch-up: a cached state must see every projected event; simplest is to forget it.
        if isinstance(event, CardRegistered):
            self.states.pop(event.card.key, None)
