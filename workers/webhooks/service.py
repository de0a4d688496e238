"""Webhooks: the delivery process (`opsml webhooks run`) - the fan-out reading the log and one
lane per endpoint, kept in step with the endpoints table; restarted after an outage of Postgres
or Kafka rather than stopped by it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import asyncpg
import structlog
from aiokafka.errors import KafkaError

from registry_core.errors import InfrastructureError
from registry_core.persistence import db
from registry_core.persistence.db import Q
from registry_core.settings import Settings
from workers.webhooks import store
from workers.webhooks.fanout import run_fanout
from workers.webhooks.lanes import Lane
from workers.webhooks.policy import Backoff
from workers.webhooks.sender import Sender

log = structlog.get_logger("opsml.webhooks")

RESTART_DELAY_S = 2.0
# Commits need not wait for the WAL flush: a commit lost in a Postgres crash loses its
# transaction whole - a "delivered" mark (the delivery is sent again: at least once) or a
# fan-out with its cursor (the events are fanned out again) - never half of one.
SESSION = {"synchronous_commit": "off"}
# One active delivery process per registry (two would each send every delivery): the others
# wait as hot standbys on this advisory lock, held by the fan-out's connection; Postgres
# releases it when that session ends, a SIGKILL included.
WEBHOOKS_LOCK = 18
PRUNE_EVERY_S = 600.0
OUTAGES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError,
           InfrastructureError)  # fmt: skip


class WebhookService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.lanes: dict[str, Lane] = {}
        self.backoff = Backoff(
            base_s=settings.webhook_backoff_base_seconds,
            max_s=settings.webhook_backoff_max_seconds,
            max_attempts=settings.webhook_max_attempts,
        )

    def wake(self, endpoint_ids: set[str]) -> None:
        for endpoint_id in endpoint_ids:
            lane = self.lanes.get(endpoint_id)
            if lane is not None:
                lane.wake.set()

    async def sync_lanes(self) -> None:
        """A lane for every enabled endpoint, with its current row (URL, secrets); none for a
        deleted or disabled one (its deliveries wait, in order, until it is enabled again)."""
        rows = {r["endpoint_id"]: r for r in await store.list_endpoints(self.pool)}
        for endpoint_id in list(self.lanes):
            row = rows.get(endpoint_id)
            if row is None or not row["enabled"]:
                await self._stop_lane(self.lanes.pop(endpoint_id))
        s = self.settings
        for endpoint_id, row in rows.items():
            if not row["enabled"]:
                continue
            lane = self.lanes.get(endpoint_id)
            if lane is None:
                sender = Sender(
                    timeout_s=s.webhook_timeout_seconds,
                    max_response_bytes=s.webhook_response_max_bytes,
                    allow_private=s.webhook_allow_private,
                )
                lane = Lane(row, self.pool, sender, self.backoff, s.webhook_poll_seconds)
                lane.task = asyncio.create_task(lane.run(), name=f"webhook-lane-{endpoint_id}")
                self.lanes[endpoint_id] = lane
            else:
                lane.endpoint = row
                lane.wake.set()  # a redelivery request may have put an older event first

    async def _stop_lane(self, lane: Lane) -> None:
        if lane.task is not None:
            lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lane.task
        await lane.sender.aclose()

    def _lane_failed(self) -> BaseException | None:
        for lane in self.lanes.values():
            if lane.task is not None and lane.task.done() and not lane.task.cancelled():
                return lane.task.exception()
        return None

    async def run(self) -> None:
        conn = await db.connect(self.settings.dsn, server_settings=SESSION)
        fanout: asyncio.Task[None] | None = None
        try:
            await db.migrate(conn)
            waiting = False
            while not await conn.fetchval(Q["try_advisory_lock"], db.LOCK_NAMESPACE, WEBHOOKS_LOCK):
                if not waiting:
                    log.info("another delivery process is active; standing by")
                    waiting = True
                await asyncio.sleep(self.settings.webhook_poll_seconds)
            fanout = asyncio.create_task(run_fanout(self.settings, conn, self.wake))
            pruned_at = 0.0
            while True:
                await self.sync_lanes()
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    keep = timedelta(days=self.settings.webhook_retention_days)
                    if n := await store.prune_delivered(self.pool, keep):
                        log.info("delivery log pruned", deliveries=n)
                if fanout.done():
                    fanout.result()  # raises what stopped it
                failed = self._lane_failed()
                if failed is not None:
                    raise failed
                await asyncio.sleep(self.settings.webhook_poll_seconds)
        finally:
            if fanout is not None:
                fanout.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fanout
            for lane in list(self.lanes.values()):
                await self._stop_lane(lane)
            self.lanes.clear()
            await conn.close()


async def run_webhooks(settings: Settings) -> None:
    """The delivery process until cancelled; an outage of Postgres or Kafka restarts it."""
    while True:
        try:
            pool = await db.create_pool(
                settings.dsn, min_size=1, max_size=10, server_settings=SESSION
            )
        except OUTAGES as exc:
            log.warning("webhooks cannot start; retrying", error=str(exc)[:300])
            await asyncio.sleep(RESTART_DELAY_S)
            continue
        try:
            await WebhookService(settings, pool).run()
        except OUTAGES as exc:
            log.warning("webhooks interrupted; restarting", error=str(exc)[:300])
            await asyncio.sleep(RESTART_DELAY_S)
        finally:
            await pool.close()
