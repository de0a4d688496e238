"""`opsml replay --republish`: write the Postgres archive back into an EMPTY events topic (a
broker that lost its data), in offset order, so every archived event gets its old offset again.

Why it is safe:
* It holds the sequencer's advisory lock while it runs, so no worker can publish in between
  (a worker also refuses to start while the topic is behind its tracked offset).
* Every publish is checked: record k of the archive must come back with offset k. An offset the
  archive lacks (a fenced event the live worker never read) is filled with a placeholder record
  (no value, header `opsml-gap`), which every reader skips, so later offsets still line up.
* The commands topic is gone too, so the tracked command offset is reset to -1: the worker then
  reads the new commands topic from 0. A command a client re-sends after the loss is answered
  from `command_outcomes` (de-duplicated by command_id), never decided twice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaProducer
from rich.console import Console

from registry_core import messaging
from registry_core.contracts.codec import decode_event, encode
from registry_core.domain.events import EVENT_SCHEMA_VERSION, Event
from registry_core.messaging import ensure_topics
from registry_core.persistence import db
from registry_core.persistence.db import LOCK_NAMESPACE, SEQUENCER_LOCK, Q
from registry_core.persistence.projection import get_tracking
from registry_core.settings import Settings
from workers.replay import sources
from workers.replay.progress import progress_bar
from workers.replay.schemas import ReplayError

log = structlog.get_logger("opsml.replay")

GAP_KEY = b"opsml-gap"
GAP_HEADERS = [("opsml-gap", b"1")]
CHUNK = 1000


@dataclass
class RepublishResult:
    events: int
    gaps: int
    seconds: float
    command_offset_was: int | None


def _key(event: Event) -> bytes | None:
    """The key the sequencer gave the event."""
    key = event.partition_key
    return key.encode() if key is not None else None


def _record(payload: object) -> tuple[bytes, bytes | None]:
    """Bytes as the sequencer wrote them: the current schema is re-encoded through its model
    (same field order as the original); an older one is written as archived (readers upcast)."""
    try:
        event = decode_event(payload)  # type: ignore[arg-type]
    except Exception:
        return orjson.dumps(payload), None
    if isinstance(payload, dict) and payload.get("schema_version") == EVENT_SCHEMA_VERSION:
        return encode(event), _key(event)
    return orjson.dumps(payload), _key(event)


async def _hold_lock(conn: asyncpg.Connection, wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while not await conn.fetchval(Q["try_advisory_lock"], LOCK_NAMESPACE, SEQUENCER_LOCK):
        if time.monotonic() > deadline:
            raise ReplayError(
                "a sequencer worker is active (it holds the sequencer lock): stop every worker"
                " before republishing"
            )
        await asyncio.sleep(0.2)


async def republish(
    settings: Settings, *, console: Console | None = None, batch_bytes: int = 16_384
) -> RepublishResult:
    """`batch_bytes`: the producer's record batch size. The default suits any broker; `opsml
    dev` restores its in-memory Tansu log with 1 MiB batches, because Tansu 0.6 keeps one stored
    batch per produced batch and lists them all on every fetch (10k events: ~12 batches)."""
    conn = await db.connect(settings.dsn)
    try:
        await _hold_lock(conn)
        await messaging.check_reachable(settings)  # ensure_topics would retry for a minute
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            [settings.commands_topic, settings.events_topic],
            client_kwargs=settings.kafka_client_kwargs(),
        )
        hw = await messaging.log_end(settings, settings.events_topic)
        if hw != 0:
            raise ReplayError(
                f"refusing to republish: {settings.events_topic} is not empty (high-water mark"
                f" {hw}). --republish only restores a topic that lost all its data"
            )
        tracking = await get_tracking(conn, settings.worker_name)
        end = max(await sources.archive_end(conn), tracking.event_offset if tracking else -1)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=batch_bytes,
            max_request_size=max(settings.max_command_bytes * 2, 1_048_576),
            **settings.kafka_client_kwargs(),
        )
        await messaging.start_client(producer, settings.kafka_bootstrap_servers)
        events = gaps = 0
        t0 = time.perf_counter()
        try:
            with progress_bar(console) as bar:
                task = bar.add_task("republish", total=end + 1)
                expected = 0
                async for batch in sources.archive_batches(conn, 0, end, CHUNK):
                    futures = []
                    for offset, payload in batch:
                        while expected < offset:  # an offset the archive lacks
                            futures.append(
                                await producer.send(
                                    settings.events_topic, None, key=GAP_KEY,
                                    partition=0, headers=GAP_HEADERS,
                                )
                            )  # fmt: skip
                            expected += 1
                            gaps += 1
                        value, key = _record(payload)
                        futures.append(
                            await producer.send(settings.events_topic, value, key=key, partition=0)
                        )
                        expected += 1
                        events += 1
                    metadata = await asyncio.gather(*futures)
                    first = expected - len(metadata)
                    for i, md in enumerate(metadata):
                        if md.offset != first + i:
                            raise ReplayError(
                                f"record {first + i} of the archive landed at offset {md.offset}:"
                                " something else is writing to the topic. Empty it and retry"
                            )
                    bar.advance(task, len(metadata))
                while expected <= end:  # trailing offsets the archive lacks
                    md = await producer.send_and_wait(
                        settings.events_topic, None, key=GAP_KEY, partition=0, headers=GAP_HEADERS
                    )
                    if md.offset != expected:
                        raise ReplayError(f"gap record landed at {md.offset}, not {expected}")
                    expected += 1
                    gaps += 1
        finally:
            await producer.stop()
        await conn.execute(Q["reset_command_offset"], settings.worker_name)
        result = RepublishResult(
            events, gaps, time.perf_counter() - t0, tracking.command_offset if tracking else None
        )
        log.info(
            "republished the archive", events=events, gaps=gaps, high_water=end + 1,
            command_offset_reset_from=result.command_offset_was,
        )  # fmt: skip
        return result
    finally:
        await conn.close()  # ends the session: the sequencer lock is released
