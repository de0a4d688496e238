"""The API process's start and stop: what must be true before the first request is answered
(schema migrated, topics created, pool, outcome listener and store open) and closed after the
last. Everything it opens lands on `app.state`, where workers/api/deps.py hands it to routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from fastapi import FastAPI

from registry_core.messaging import ensure_topics
from registry_core.persistence import db
from registry_core.settings import Settings
from registry_core.storage import open_store
from workers.api.waiters import OutcomeWaiters
from workers.ui import LiveHub

log = structlog.get_logger("opsml.api")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pool `reset` that leaves the session as it is (see lifespan)."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    s: Settings = app.state.settings
    conn = await db.connect(s.dsn)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    # Clients publish straight after reading /config: the topics must exist with 1
    # partition before that, or an auto-creating broker would make them with several.
    await ensure_topics(
        s.kafka_bootstrap_servers,
        [s.commands_topic, s.events_topic],
        client_kwargs=s.kafka_client_kwargs(),
    )
    # `reset=_keep_session`: no reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    # UNLISTEN *; RESET ALL`) on every release - a round trip per request. The API's pooled
    # connections only run reads and token statements: no session settings, advisory
    # locks, cursors or LISTENs to undo (asyncpg still rolls back an open transaction).
    app.state.pool = await db.create_pool(s.dsn, min_size=1, max_size=10, reset=_keep_session)
    app.state.waiters = OutcomeWaiters(s.dsn)
    await app.state.waiters.start()
    app.state.ui_live = LiveHub(s.dsn)  # the web UI's live feed (workers/ui/live.py)
    app.state.ui_live.on_change.append(app.state.ui_counts.changed)
    await app.state.ui_live.start()
    app.state.store = open_store(
        s.storage_uri, s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region
    )
    # Everything alive now (the app, its routes and models, imported modules) lives as long
    # as the process: out of the collector's sight, a full collection scans only what
    # requests allocate instead of pausing for all of it.
    gc.collect()
    gc.freeze()
    log.info("api ready")
    try:
        yield
    finally:
        await app.state.store.close()
        probe = getattr(app.state, "kafka_probe", None)  # /readyz's (routers/ops.py)
        if probe is not None:
            await probe.close()
        await app.state.ui_live.stop()
        await app.state.waiters.stop()
        await app.state.pool.close()
