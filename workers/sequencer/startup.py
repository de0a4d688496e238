"""Becoming the active sequencer: the lock, the check that the log still holds what was
projected, and the new epoch's marker.

One sequencer is active: it holds a Postgres advisory lock on the connection it writes with, so
a worker that lost its lock cannot commit anything, and a second worker waits as a hot standby.
Each start claims a new epoch (the fencing token every event carries) and publishes a marker
for it before deciding anything; docs/architecture.md has the argument.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid5

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer

from registry_core import messaging
from registry_core.contracts.codec import encode
from registry_core.domain.events import OPSML_NAMESPACE, SequencerStarted, event_id_for
from registry_core.persistence.db import LOCK_NAMESPACE, SEQUENCER_LOCK, Q
from registry_core.persistence.projection import get_tracking
from registry_core.settings import Settings
from workers.sequencer.health import STATUS

log = structlog.get_logger("opsml.sequencer")


async def acquire_lock(conn: asyncpg.Connection, stop: asyncio.Event, retry_seconds: float) -> bool:
    """Take the sequencer lock, waiting as hot standby while another worker holds it; False if
    `stop` was set first."""
    announced = False
    while not stop.is_set():
        if await conn.fetchval(Q["try_advisory_lock"], LOCK_NAMESPACE, SEQUENCER_LOCK):
            log.info("sequencer lock acquired: active")
            STATUS.set("starting")  # active once caught up (the pipeline says so)
            return True
        STATUS.lock_attempted()  # a healthy standby: its connection answers
        if not announced:
            log.info("another sequencer holds the lock: waiting as hot standby")
            announced = True
        try:
            await asyncio.wait_for(stop.wait(), retry_seconds)
        except TimeoutError:
            pass
    return False


async def refuse_if_log_lost(conn: asyncpg.Connection, settings: Settings) -> None:
    """Stop before claiming an epoch when the events topic ends below the tracked offset
    (BrokerDataLost): a broker that lost its data would hand out offsets already in event_log
    (the next batch would collide with the archive) and the catch-up would silently find
    nothing to do."""
    tracking = await get_tracking(conn, settings.worker_name)
    if tracking is not None:
        await messaging.refuse_if_log_lost(settings, settings.events_topic, tracking.event_offset)


async def publish_marker(producer: AIOKafkaProducer, events_topic: str, epoch: int) -> int:
    """Publish the epoch's `SequencerStarted` marker; returns its offset. Everything an older
    epoch publishes after it is ignored by every projection."""
    marker_cid = uuid5(OPSML_NAMESPACE, f"epoch:{events_topic}:{epoch}")
    marker = SequencerStarted(
        event_id=event_id_for(marker_cid, epoch),
        command_id=marker_cid,
        occurred_at=datetime.now(UTC),
        epoch=epoch,
    )
    md = await producer.send_and_wait(events_topic, encode(marker), partition=0)
    return int(md.offset)
