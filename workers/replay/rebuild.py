"""`opsml replay`: rebuild every read table from the event log into a fresh schema while the API
keeps serving the old one, verify it against the live tables, then switch atomically.

Phases:
1. Bulk: events [0, T] from Kafka (or the archive), T = the live projection's last event offset
   when the replay starts. Never past T: an event the live worker has published but not yet
   committed will be committed by the worker itself (into whichever schema is live by then);
   had the rebuild archived it too, the worker's insert would collide.
2. Catch up, unlocked, what the worker committed meanwhile (from the live archive).
3. One transaction on the live schema: `LOCK tracking IN EXCLUSIVE MODE` (the worker's next
   projection waits, readers do not), the last catch-up, a consistent comparison of every read
   table, then - unless verify-only, or there are differences and no `force` - copy the live
   tracking rows (command offset, claimed epoch: operational state the events do not carry) and
   rename `public` -> `opsml_old_<n>`, `opsml_rebuild_<n>` -> `public`; commit. The waiting worker
   statement re-resolves its tables once the lock is granted and lands in the rebuilt ones; see
   schemas.py for why the API follows too.

The projection rule is the live catch-up's: an event whose epoch is lower than the highest epoch
seen so far is archived with applied = false and not applied (a fenced-off sequencer's output).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Literal

import asyncpg
import structlog
from rich.console import Console

from registry_core import messaging
from registry_core.persistence import db
from registry_core.persistence.projection import UNSTORABLE, claim_epoch, describe_refusal
from registry_core.settings import Settings
from workers.replay import sources
from workers.replay.bulk import bulk_load, bulk_supported
from workers.replay.progress import RateColumn, progress_bar
from workers.replay.projecting import catch_up, live_tracking, project_batches
from workers.replay.results import ReplayResult, ReplayStats
from workers.replay.schemas import (
    LIVE_SCHEMA,
    REBUILD_PREFIX,
    ReplayError,
    connect_in,
    create_rebuild_schema,
    drop_schema,
    next_number,
    tables_in,
)
from workers.replay.switch import finish

# (re-exported: where callers and tests have always found them)
__all__ = ["RateColumn", "ReplayResult", "ReplayStats", "Source", "progress_bar",
           "project_batches", "replay"]  # fmt: skip

log = structlog.get_logger("opsml.replay")

Source = Literal["kafka", "archive"]


async def replay(
    settings: Settings,
    *,
    source: Source = "kafka",
    verify_only: bool = False,
    force: bool = False,
    keep: bool = False,
    batch_size: int = 5000,
    console: Console | None = None,
    bulk: bool = True,
) -> ReplayResult:
    """Rebuild, verify and (unless `verify_only`) switch. With differences the switch needs
    `force` (a replay after a projection fix is *meant* to differ; by default it must not).

    `bulk` (default): the COPY path of workers/replay/bulk.py into index-free tables; False: the
    live projection batch by batch (slower; the reference the bulk path is tested against)."""
    name = settings.worker_name
    live = await db.connect(settings.dsn, server_settings={"search_path": LIVE_SCHEMA})
    rebuild: asyncpg.Connection | None = None
    schema = ""
    done = False
    try:
        n = await next_number(live)
        schema = f"{REBUILD_PREFIX}{n}"
        live_rows = {r["name"]: r for r in await live_tracking(live)}
        has_archive = "event_log" in await tables_in(live, LIVE_SCHEMA)
        # The log's end, read before the live position it is compared with (ReplayResult.behind)
        log_end = (
            await messaging.log_end(settings, settings.events_topic) - 1
            if source == "kafka"
            else None
        )
        if name in live_rows:
            target = int(live_rows[name]["event_offset"])
        elif log_end is None:  # the archive
            target = await sources.archive_end(live) if has_archive else -1
        else:
            target = log_end
        if source == "archive" and not has_archive:
            raise ReplayError("there is no event_log table to replay from; use --source kafka")

        await create_rebuild_schema(settings.dsn, live, schema)
        rebuild = await connect_in(settings.dsn, schema)
        tracking = await claim_epoch(rebuild, name)
        stats = ReplayStats()
        use_bulk = bulk and await bulk_supported(rebuild, schema)
        t0 = time.perf_counter()
        stats.marks.append(("start", t0))
        with progress_bar(console) as bar:
            task = bar.add_task(f"replay from {source}", total=target + 1)

            def events(as_text: bool) -> AsyncIterator[sources.Batch]:
                if source == "kafka":
                    return sources.kafka_batches(settings, 0, target, batch_size)
                return sources.archive_batches(live, 0, target, batch_size, text=as_text)

            refused: BaseException | None = None
            if use_bulk:
                batches = events(True)
                try:
                    state = await bulk_load(
                        settings.dsn, schema, batches, tracking_name=name,
                        max_epoch=tracking.max_epoch, stats=stats,
                        progress=lambda n: bar.advance(task, n), connect=connect_in,
                    )  # fmt: skip
                    stats.deferred = len(state.deferred)
                except Exception as exc:
                    refused = _refusal(exc)
                    if refused is None:
                        raise
                finally:
                    await _close(batches)
            if refused is not None:
                # The COPY path has no per-event isolation: an event the tables refuse fails the
                # whole load. Start again on a fresh schema with the live projection, batch by
                # batch, which sets such events aside exactly as the live worker did.
                log.warning(
                    "the bulk load met an event the read tables refuse: rebuilding batch by"
                    " batch, which sets it aside", error=describe_refusal(refused),
                )  # fmt: skip
                await rebuild.close()
                rebuild = None
                await drop_schema(live, schema)
                await create_rebuild_schema(settings.dsn, live, schema)
                rebuild = await connect_in(settings.dsn, schema)
                await claim_epoch(rebuild, name)
                stats = ReplayStats(marks=stats.marks)
                bar.reset(task)
                use_bulk = False
            if not use_bulk:
                await project_batches(
                    rebuild, events(False), tracking_name=name, stats=stats, progress=bar,
                    task=task,
                )  # fmt: skip
        stats.seconds = time.perf_counter() - t0
        stats.marks.append(("end", t0 + stats.seconds))
        log.info(
            "rebuilt", schema=schema, events=stats.events, applied=stats.applied,
            fenced=stats.fenced, undecodable=stats.undecodable, seconds=round(stats.seconds, 2),
            events_per_s=round(stats.rate), bulk=use_bulk, deferred=stats.deferred,
        )  # fmt: skip
        result = ReplayResult(schema, stats)
        # Most of what the worker committed meanwhile is caught up without blocking it.
        result.caught_up = await catch_up(live, rebuild, name, stats)
        await finish(
            live, rebuild, result, n=n, name=name, had_live_tracking=bool(live_rows),
            has_archive=has_archive, verify_only=verify_only, force=force, console=console,
        )  # fmt: skip
        done = result.switched
        if log_end is not None:
            row = next((r for r in await live_tracking(live) if r["name"] == name), None)
            result.log_end = log_end
            result.live_event_offset = int(row["event_offset"]) if row is not None else -1
        return result
    finally:
        if rebuild is not None:
            await rebuild.close()
        if schema and not done and not keep:
            try:
                await drop_schema(live, schema)
            except asyncpg.PostgresError:
                log.exception("could not drop the rebuild schema", schema=schema)
        await live.close()


def _refusal(exc: BaseException) -> BaseException | None:
    """The tables' refusal of an event (`projection.UNSTORABLE`) that stopped the bulk load, if
    that is all that stopped it: its copies run in a task group, which raises their errors as
    one group. None for anything else (a lost connection, a duplicate: no retry hides those)."""
    if isinstance(exc, UNSTORABLE):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        group, rest = exc.split(UNSTORABLE)
        if group is not None and rest is None:
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            return first
    return None


async def _close(batches: AsyncIterator[sources.Batch]) -> None:
    """Stop a source the load left part-read (its reader task and consumer)."""
    aclose = getattr(batches, "aclose", None)
    if aclose is not None:
        await aclose()
