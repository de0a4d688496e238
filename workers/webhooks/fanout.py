"""Webhooks: the fan-out - `opsml.events` read from the delivery process's own position, each
event matched against every endpoint's filters, and the deliveries stored together with the
new position (one transaction per read), so no event is skipped and none fanned out twice.

The position lives in Postgres (`opsml_webhooks.cursor`) rather than in a Kafka group offset for
the same reason the sequencer keeps its offsets with its projection: it is committed in the same
transaction as what it covers. Reading follows the log's rules (`registry_core.messaging`): gap
free, undecodable records and gap placeholders skipped, fenced events (an epoch below one
already seen) dropped - the fence's highest epoch is kept with the position.

An endpoint receives the events that occurred after it was registered (`occurred_at >=
created_at`), whenever the delivery process gets to read them: a process that was down for an
hour delivers that hour's events when it starts. The endpoints are read under a share lock in the
fan-out's transaction and `created_at` is taken after a registration got its lock, so an event
that occurred after the registration is never matched against a list without the endpoint (the
sequencer's clock and Postgres' are compared: on different machines, keep them in sync).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import structlog
from aiokafka import TopicPartition

from registry_core import messaging
from registry_core.settings import Settings
from workers.webhooks import store
from workers.webhooks.policy import Filters

log = structlog.get_logger("opsml.webhooks")

Delivery = tuple[str, int, UUID, str, str]


def body_of(offset: int, data: dict[str, Any]) -> str:
    """What an endpoint receives: the event in its contract shape (docs/events.md) under
    `data`, with its type, time and log offset beside it (Standard Webhooks' envelope)."""
    envelope = {"type": data["type"], "timestamp": data["occurred_at"], "offset": offset,
                "data": data}  # fmt: skip
    return orjson.dumps(envelope).decode()


def match(
    decoded: Sequence[messaging.Decoded], endpoints: Sequence[asyncpg.Record]
) -> list[Delivery]:
    out: list[Delivery] = []
    filters = [(e, Filters.of(e)) for e in endpoints]
    for item in decoded:
        if not item.applied:
            continue
        event = item.event
        data = event.model_dump(mode="json")
        body: str | None = None
        for endpoint, wanted in filters:
            if event.occurred_at < endpoint["created_at"] or not wanted.matches(data):
                continue
            body = body or body_of(item.offset, data)
            out.append((endpoint["endpoint_id"], item.offset, event.event_id, data["type"], body))
    return out


async def run_fanout(
    settings: Settings,
    conn: asyncpg.Connection,
    woke: Callable[[set[str]], None],
    ready: Callable[[int], None] | None = None,
) -> None:
    """Forever: read, match, store deliveries and position; `woke` hears which endpoints got
    new deliveries."""
    got = await store.cursor(conn)
    position, max_epoch = got if got is not None else (0, 0)
    consumer = messaging.consumer_for(
        settings, fetch_max_wait_ms=settings.webhook_fetch_max_wait_ms
    )
    await messaging.start_client(consumer, settings.kafka_bootstrap_servers)
    try:
        tp = TopicPartition(settings.events_topic, 0)
        consumer.assign([tp])
        reader = messaging.EventLogReader(
            consumer, tp, position,
            decoder=messaging.EventDecoder(messaging.EpochFence(max_epoch)),
            pace=messaging.FetchPace.following(consumer),
        )  # fmt: skip
        log.info("webhooks reading events", topic=tp.topic, offset=position, epoch=max_epoch)
        if ready is not None:
            ready(position)
        while True:
            items = await reader.read(timeout_ms=1000, max_records=500)
            if reader.position == position:
                continue
            position = reader.position
            deliveries = await store.fan_out(
                conn, functools.partial(match, items), position,
                reader.decoder.max_epoch,
            )  # fmt: skip
            if deliveries:
                woke({d[0] for d in deliveries})
    finally:
        await consumer.stop()
