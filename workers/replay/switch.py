"""Replay: the switch - a comparison of the rebuild with the live tables that does not block the
worker, then a short locked catch-up, the tracking rows carried over and the atomic rename
(schemas.py says why renaming schemas is enough for the running API and worker)."""

from __future__ import annotations

import time

import asyncpg
import structlog
from rich.console import Console

from registry_core.persistence.db import Q
from workers.replay.compare import compare
from workers.replay.projecting import catch_up, live_tracking
from workers.replay.results import ReplayResult
from workers.replay.schemas import (
    LIVE_SCHEMA,
    OLD_PREFIX,
    ReplayError,
    copy_table_grants,
    rename_schemas,
)

log = structlog.get_logger("opsml.replay")


async def finish(
    live: asyncpg.Connection,
    rebuild: asyncpg.Connection,
    result: ReplayResult,
    *,
    n: int,
    name: str,
    had_live_tracking: bool,
    has_archive: bool,
    verify_only: bool,
    force: bool,
    console: Console | None,
) -> None:
    """A consistent comparison that does not block the worker, then (unless verify-only, or
    different without `force`) a short locked catch-up, copy tracking, rename."""
    old = f"{OLD_PREFIX}{n}"
    # The comparison needs the live tables to hold still, but must not block the worker: the live
    # side is read in one REPEATABLE READ snapshot, and the rebuild is caught up to exactly that
    # snapshot's tracked offset first (from the archive as of the same snapshot).
    async with live.transaction(isolation="repeatable_read", readonly=True):
        result.caught_up += await catch_up(live, rebuild, name, result.stats)
        if has_archive:
            result.diffs = await compare(live, LIVE_SCHEMA, result.schema, other=rebuild)
    if verify_only:
        return
    if not result.identical and not force:
        if console is not None:
            for diff in result.diffs:
                if not diff.equal:
                    console.print(diff.describe(), markup=False, highlight=False)
        raise ReplayError(
            "the rebuild differs from the live tables (printed above); nothing was switched."
            f" Pass --force to switch anyway (the old tables would be kept as {old})"
        )
    # Under the tracking lock (the worker's next projection waits; readers do not) only the few
    # events committed since the snapshot are caught up - by the same deterministic projection
    # that was just verified - before the rename.
    async with live.transaction():
        await live.execute(Q["switch_lock_timeout"])
        if had_live_tracking:
            await live.execute(Q["lock_tracking_exclusive"])
        t0 = time.perf_counter()
        result.caught_up += await catch_up(live, rebuild, name, result.stats)
        if had_live_tracking:
            rows = await live_tracking(live)
            await rebuild.executemany(
                Q["upsert_tracking"],
                [
                    (r["name"], r["command_offset"], r["event_offset"], r["max_epoch"],
                     r["claimed_epoch"])
                    for r in rows
                ],
            )  # fmt: skip
        else:
            await rebuild.execute(Q["lift_claimed_epoch"])
        await copy_table_grants(live, LIVE_SCHEMA, result.schema)
        await rename_schemas(live, result.schema, old)
        result.lock_seconds = time.perf_counter() - t0
    result.switched = True
    result.old_schema = old
    log.info(
        "switched", live=result.schema, old=old, caught_up=result.caught_up,
        lock_ms=round(result.lock_seconds * 1000, 1),
    )  # fmt: skip
