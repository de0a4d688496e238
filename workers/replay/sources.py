"""Where a replay reads events from: the Kafka log (the source of truth) or the Postgres archive
(`event_log`, for a broker that lost its data). Both yield (offset, payload) batches in offset
order, from `start` up to and including `end`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from registry_core import messaging
from registry_core.errors import BrokerUnreachable, InfrastructureError
from registry_core.persistence.db import Q
from registry_core.settings import Settings
from workers.replay.schemas import ReplayError

Batch = list[tuple[int, Any]]

READ_AHEAD = 8  # batches read from Kafka ahead of the caller (kafka_batches)


def unreachable(settings: Settings, exc: BaseException | None = None) -> str:
    """One line for an operator: which address failed and which setting holds it."""
    if isinstance(exc, InfrastructureError):
        return str(exc)  # it names both already
    why = f": {exc}" if exc is not None else ""
    return (
        f"cannot reach Kafka at {settings.kafka_bootstrap_servers} (the setting"
        f" {BrokerUnreachable.setting}){why}"
    )


async def kafka_batches(
    settings: Settings, start: int, end: int, batch_size: int
) -> AsyncIterator[Batch]:
    """Events [start, end] from the log, gap-free (see registry_core.messaging.ContiguousReader)."""
    if start > end:
        return
    hw = await messaging.log_end(settings, settings.events_topic)
    if hw < end + 1:
        raise ReplayError(
            f"{settings.events_topic} ends at offset {hw - 1}, but the registry has projected up"
            f" to {end}: the broker lost data. Rebuild from the archive (--source archive) and"
            " write it back to Kafka (--republish)"
        )
    consumer = messaging.consumer_for(
        settings,
        max_partition_fetch_bytes=8 * 1_048_576,
        fetch_max_bytes=64 * 1_048_576,
    )
    await messaging.start_client(consumer, settings.kafka_bootstrap_servers)
    tp = TopicPartition(settings.events_topic, 0)
    # Read ahead: aiokafka sends the next fetch only once its buffered records are taken, so a
    # task takes them as they arrive (up to READ_AHEAD batches) while the caller works on
    # earlier ones; otherwise every fetch (~12k events) would be a round trip of idle waiting.
    ready: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(READ_AHEAD)

    async def pump() -> None:
        reader = messaging.ContiguousReader(consumer, tp, start)
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
    return int(await conn.fetchval(Q["archive_end"]))


async def archive_batches(
    conn: asyncpg.Connection, start: int, end: int, batch_size: int, *, text: bool = False
) -> AsyncIterator[Batch]:
    """Events [start, end] from `event_log` of the connection's schema, keyset-paged. `text`:
    payloads as JSON text (the bulk path's input) instead of decoded dicts."""
    position = start
    while position <= end:
        page = Q["archive_page_text"] if text else Q["archive_page"]
        rows = await conn.fetch(page, position, end, batch_size)
        if not rows:
            return
        yield [(r["event_offset"], r["payload"]) for r in rows]
        position = rows[-1]["event_offset"] + 1
