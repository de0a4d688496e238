"""Where a replay reads events from: the Kafka log (the source of truth) or the Postgres archive
(`event_log`, for a broker that lost its data). Both yield (offset, payload) batches in offset
order, from `start` up to and including `end`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, OffsetOutOfRangeError

from registry_core.messaging import ContiguousReader
from registry_core.settings import Settings
from workers.replay.schemas import ReplayError

Batch = list[tuple[int, Any]]

ARCHIVE_PAGE = """
SELECT event_offset, payload FROM event_log
WHERE event_offset >= $1 AND event_offset <= $2
ORDER BY event_offset LIMIT $3
"""
ARCHIVE_PAGE_TEXT = """
SELECT event_offset, payload::text AS payload FROM event_log
WHERE event_offset >= $1 AND event_offset <= $2
ORDER BY event_offset LIMIT $3
"""
ARCHIVE_END = "SELECT coalesce(max(event_offset), -1) FROM event_log"
READ_AHEAD = 8  # batches read from Kafka ahead of the caller (kafka_batches)


def unreachable(settings: Settings, exc: BaseException | None = None) -> str:
    """One line for an operator: which address failed and which setting holds it."""
    why = f": {exc}" if exc is not None else ""
    return (
        f"cannot reach Kafka at {settings.kafka_bootstrap_servers} (the setting"
        f" OPSML_KAFKA_BOOTSTRAP_SERVERS){why}"
    )


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs its own ERROR line for a refused connection; the ReplayError says it."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def start_client(client: AIOKafkaConsumer | AIOKafkaProducer, settings: Settings) -> None:
    """Start an aiokafka client; an unreachable broker is a ReplayError that names the address
    and the setting (printed as one line by `opsml replay`, not a traceback)."""
    try:
        with _quiet_aiokafka():
            await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise ReplayError(unreachable(settings, exc)) from None


async def check_reachable(settings: Settings) -> None:
    """Fail fast, in one line, when no broker answers at the configured address."""
    # (a producer: a consumer stopped straight after its start can raise CancelledError)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_kwargs()
    )
    await start_client(producer, settings)
    await producer.stop()


def consumer_for(settings: Settings, **extra: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="none",  # never jump: a missing offset is lost data, an error
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **settings.kafka_client_kwargs(),
        **extra,
    )


async def high_water(settings: Settings, topic: str, probe: int = 0) -> int:
    """The partition's high-water mark, as reported by a fetch. (Tansu answers ListOffsets
    `latest` wrongly, so end_offsets()/seek_to_end() are not used.) A `probe` offset past the end
    raises OffsetOutOfRangeError; offset 0 of an empty topic is valid and reports 0."""
    consumer = consumer_for(settings)
    await start_client(consumer, settings)
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, probe)
        for _ in range(100):
            await consumer.getmany(tp, timeout_ms=100, max_records=1)
            hw = consumer.highwater(tp)
            if hw is not None:
                return int(hw)
        raise ReplayError(f"no fetch response from {topic} after 10 s; {unreachable(settings)}?")
    finally:
        await consumer.stop()


async def kafka_batches(
    settings: Settings, start: int, end: int, batch_size: int
) -> AsyncIterator[Batch]:
    """Events [start, end] from the log, gap-free (see registry_core.messaging.ContiguousReader)."""
    if start > end:
        return
    hw = await high_water(settings, settings.events_topic)
    if hw < end + 1:
        raise ReplayError(
            f"{settings.events_topic} ends at offset {hw - 1}, but the registry has projected up"
            f" to {end}: the broker lost data. Rebuild from the archive (--source archive) and"
            " write it back to Kafka (--republish)"
        )
    consumer = consumer_for(
        settings,
        max_partition_fetch_bytes=8 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await start_client(consumer, settings)
    tp = TopicPartition(settings.events_topic, 0)
    # Read ahead: aiokafka sends the next fetch only once its buffered records are taken, so a
    # task takes them as they arrive (up to READ_AHEAD batches) while the caller works on
    # earlier ones; otherwise every fetch (~12k events) would be a round trip of idle waiting.
    ready: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(READ_AHEAD)

    async def pump() -> None:
        reader = ContiguousReader(consumer, tp, start)
        try:
            while reader.position <= end:
                try:
                    records = await reader.read(timeout_ms=500, max_records=batch_size)
                except OffsetOutOfRangeError as exc:
                    raise ReplayError(
                        f"{settings.events_topic} has no offset {reader.position}: the broker"
                        " lost data; use --source archive"
                    ) from exc
                batch = [(r.offset, r.value) for r in records if r.offset <= end]
                if batch:
                    await ready.put(batch)
            await ready.put(None)
        except Exception as exc:
            await ready.put(exc)

    task: asyncio.Task[None] | None = None
    try:
        consumer.assign([tp])
        task = asyncio.create_task(pump())
        while True:
            item = await ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.stop()


async def archive_end(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(ARCHIVE_END))


async def archive_batches(
    conn: asyncpg.Connection, start: int, end: int, batch_size: int, *, text: bool = False
) -> AsyncIterator[Batch]:
    """Events [start, end] from `event_log` of the connection's schema, keyset-paged. `text`:
    payloads as JSON text (the bulk path's input) instead of decoded dicts."""
    position = start
    while position <= end:
        page = ARCHIVE_PAGE_TEXT if text else ARCHIVE_PAGE
        rows = await conn.fetch(page, position, end, batch_size)
        if not rows:
            return
        yield [(r["event_offset"], r["payload"]) for r in rows]
        position = rows[-1]["event_offset"] + 1
