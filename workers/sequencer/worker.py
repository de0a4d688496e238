"""The sequencer worker, wired: the only writer of versions.

`Sequencer.run` opens what the sequencer works with and goes through its life in order: the
lock (workers/sequencer/startup.py), a new epoch and its marker, the catch-up of what a
predecessor published and never projected (catchup.py), then the batch loop (pipeline.py), in
which each command is decided (decisions.py and the pure registry_core/domain), published
(publishing.py) and projected in one Postgres transaction. Offsets live in Postgres (the
partition is assigned, not group-managed), so the command position and the projection always
commit together; docs/architecture.md has the exactly-once argument.
"""

from __future__ import annotations

import asyncio
import functools

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer

from registry_core.domain.aliases import parse_alias_grants, parse_protected
from registry_core.messaging import ensure_topics
from registry_core.persistence import db, server_settings
from registry_core.persistence.projection import claim_epoch
from registry_core.settings import Settings
from registry_core.storage import ArtifactStore, open_store
from workers.sequencer import faults as fault_injection
from workers.sequencer import kafka, startup
from workers.sequencer.artifacts import Artifacts
from workers.sequencer.authz import CommandAuthorizer
from workers.sequencer.catchup import CatchUp
from workers.sequencer.faults import Faults
from workers.sequencer.pipeline import BatchPipeline
from workers.sequencer.publishing import Publisher
from workers.sequencer.state_cache import StateCache

log = structlog.get_logger("opsml.sequencer")

_WARNED = [False]  # the open-commands warning: once per process, not on every restart


class Sequencer:
    def __init__(self, settings: Settings, *, faults: Faults | None = None) -> None:
        self.s = settings
        # Fault injection for the crash tests (workers/sequencer/faults.py): none in production.
        self.faults = faults if faults is not None else fault_injection.from_environment()
        self.ready = asyncio.Event()  # set once the sequencer is active (lock held, caught up)
        self.epoch = 0
        self.states = StateCache()  # a restarted sequencer is a new object: a fresh cache
        self.store: ArtifactStore = open_store(
            settings.storage_uri,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        )
        # Access control (docs/security.md): raises at start for an unsafe configuration.
        key = settings.grant_key_bytes() if settings.auth_required() else None
        self.authz = (
            CommandAuthorizer(
                key,
                settings.token_cache_seconds,
                parse_protected(settings.protected_aliases),
                parse_alias_grants(settings.alias_grants),
            )
            if key
            else None
        )
        if self.authz is None and not _WARNED[0]:
            _WARNED[0] = True
            log.warning(
                "commands are not authenticated (OPSML_GRANT_KEY is not set): anyone who can"
                " write to the commands topic can register cards; fine on loopback only"
            )

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
        conn = await db.connect(s.dsn)
        read_conn: asyncpg.Connection | None = None
        artifacts = Artifacts(self.store, conn, self.faults, delete_artifacts=s.delete_artifacts)
        try:
            await db.keep_alive(conn)
            await db.migrate(conn)
            if not await startup.acquire_lock(conn, stop, s.lock_retry_seconds):
                return
            await server_settings.record(conn, s)  # what a server registry reads
            if s.worker_pipeline:
                read_conn = await db.connect(s.dsn)
                await db.keep_alive(read_conn)
            producer = kafka.events_producer(s)
            await producer.start()
            try:
                publisher = Publisher(producer, s.events_topic, functools.partial(kafka.reader, s))
                await self._start_epoch(conn, producer, publisher, artifacts)
                pipeline = BatchPipeline(
                    s, conn=conn, read_conn=read_conn, epoch=self.epoch, states=self.states,
                    publisher=publisher, artifacts=artifacts, authz=self.authz,
                    faults=self.faults,
                )  # fmt: skip
                await pipeline.run(stop, self.ready)
            finally:
                await producer.stop()
        finally:
            if read_conn is not None:
                await read_conn.close()
            await conn.close()
            await artifacts.close()
            await self.store.close()

    async def _start_epoch(
        self,
        conn: asyncpg.Connection,
        producer: AIOKafkaProducer,
        publisher: Publisher,
        artifacts: Artifacts,
    ) -> None:
        """Claim a new epoch, publish its marker, and project every event up to the marker:
        events published before a crash but never projected, including any from a fenced-off
        predecessor that published just before we started."""
        s = self.s
        reader = functools.partial(kafka.reader, s)
        await startup.refuse_if_log_lost(conn, s)
        tracking = await claim_epoch(conn, s.worker_name)
        self.epoch = tracking.claimed_epoch
        structlog.contextvars.bind_contextvars(epoch=self.epoch)
        marker = await startup.publish_marker(producer, s.events_topic, self.epoch)
        catch_up = CatchUp(
            conn, tracking_name=s.worker_name, events_topic=s.events_topic, epoch=self.epoch,
            states=self.states, publisher=publisher, artifacts=artifacts, reader=reader,
        )  # fmt: skip
        last = await catch_up.run(tracking.event_offset + 1, marker, tracking.max_epoch)
        log.info("caught up", marker_offset=marker, last_offset=last)
        publisher.next_event_offset = last + 1
