"""Replay: projecting events into a rebuild with the live projection, batch by batch - the
reference path (and the one that isolates an event the tables refuse), and the catch-up on what
the live worker committed while the rebuild ran."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from rich.progress import Progress, TaskID

from registry_core import messaging
from registry_core.persistence.db import Q
from registry_core.persistence.projection import LoggedEvent, get_tracking, project
from workers.replay import sources
from workers.replay.results import ReplayStats
from workers.replay.schemas import LIVE_SCHEMA, tables_in


async def project_batches(
    conn: asyncpg.Connection,
    batches: AsyncIterator[sources.Batch],
    *,
    tracking_name: str,
    stats: ReplayStats,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> None:
    """Project (offset, payload) batches into `conn`'s schema with the live catch-up's rule."""
    tracking = await get_tracking(conn, tracking_name)
    assert tracking is not None
    decoder = messaging.EventDecoder(messaging.EpochFence(tracking.max_epoch), stats)
    decode = decoder.decode
    async for batch in batches:
        logged: list[LoggedEvent] = []
        for offset, payload in batch:
            got = decode(offset, payload)  # (the live catch-up skips what it cannot read too)
            if got is not None:
                logged.append(LoggedEvent(offset, got.event, got.applied))
        if logged:
            await project(conn, tracking_name=tracking_name, epoch=None, events=logged)
        stats.events += len(batch)
        if progress is not None and task is not None:
            progress.advance(task, len(batch))


async def live_tracking(live: asyncpg.Connection) -> list[asyncpg.Record]:
    if "tracking" not in await tables_in(live, LIVE_SCHEMA):
        return []
    return list(await live.fetch(Q["live_tracking"]))


async def catch_up(
    live: asyncpg.Connection, rebuild: asyncpg.Connection, name: str, stats: ReplayStats
) -> int:
    """Project what the live worker committed after the rebuild's last event (from the live
    archive, which holds exactly the committed events)."""
    before = stats.events
    live_row = next((r for r in await live_tracking(live) if r["name"] == name), None)
    mine = await get_tracking(rebuild, name)
    assert mine is not None
    if live_row is not None and live_row["event_offset"] > mine.event_offset:
        await project_batches(
            rebuild,
            sources.archive_batches(
                live, mine.event_offset + 1, int(live_row["event_offset"]), 2000
            ),
            tracking_name=name,
            stats=stats,
        )
    return stats.events - before
