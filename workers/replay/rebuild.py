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
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from registry_core import messaging
from registry_core.persistence import db
from registry_core.persistence.db import Q
from registry_core.persistence.projection import (
    UNSTORABLE,
    LoggedEvent,
    claim_epoch,
    describe_refusal,
    get_tracking,
    project,
)
from registry_core.settings import Settings
from workers.replay import sources
from workers.replay.bulk import bulk_load, bulk_supported
from workers.replay.compare import TableDiff, compare
from workers.replay.schemas import (
    LIVE_SCHEMA,
    OLD_PREFIX,
    REBUILD_PREFIX,
    ReplayError,
    connect_in,
    copy_table_grants,
    create_rebuild_schema,
    drop_schema,
    next_number,
    rename_schemas,
    tables_in,
)

log = structlog.get_logger("opsml.replay")

Source = Literal["kafka", "archive"]


@dataclass
class ReplayStats:
    events: int = 0
    applied: int = 0
    fenced: int = 0
    undecodable: int = 0
    deferred: int = 0  # bulk path: events projected by project() after the load
    seconds: float = 0.0
    # (phase, time.perf_counter() when it ended), from the start of the rebuild on (benchmarks)
    marks: list[tuple[str, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ReplayResult:
    schema: str
    stats: ReplayStats
    diffs: list[TableDiff] = field(default_factory=list)
    switched: bool = False
    old_schema: str | None = None
    caught_up: int = 0
    lock_seconds: float = 0.0
    # The log's last offset when the replay started (Kafka source only; None: not checked), and
    # the live projection's last event offset when it ended.
    log_end: int | None = None
    live_event_offset: int | None = None

    @property
    def identical(self) -> bool:
        """The rebuilt tables equal the live ones (up to the live projection's position: see
        `behind` for what lies past it)."""
        return all(d.equal or d.explained for d in self.diffs)

    @property
    def behind(self) -> tuple[int, int] | None:
        """(first, last) offsets of the events that were in the log when the replay started and
        that the live projection had still not projected when it ended - a stopped or stuck
        worker (bug: a verify said "identical" with 40 such events); None when up to date or
        not checked. Measuring the log first and the projection last leaves a running worker
        the whole replay to commit the batch it had in flight: no false alarm."""
        if self.log_end is None or self.live_event_offset is None:
            return None
        if self.live_event_offset >= self.log_end:
            return None
        return self.live_event_offset + 1, self.log_end


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="cyan")


def progress_bar(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=console is None,
    )


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


async def _live_tracking(live: asyncpg.Connection) -> list[asyncpg.Record]:
    if "tracking" not in await tables_in(live, LIVE_SCHEMA):
        return []
    return list(await live.fetch(Q["live_tracking"]))


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
        live_rows = {r["name"]: r for r in await _live_tracking(live)}
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
        result.caught_up = await _catch_up(live, rebuild, name, stats)
        await _finish(
            live, rebuild, result, n=n, name=name, had_live_tracking=bool(live_rows),
            has_archive=has_archive, verify_only=verify_only, force=force, console=console,
        )  # fmt: skip
        done = result.switched
        if log_end is not None:
            row = next((r for r in await _live_tracking(live) if r["name"] == name), None)
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


async def _catch_up(
    live: asyncpg.Connection, rebuild: asyncpg.Connection, name: str, stats: ReplayStats
) -> int:
    """Project what the live worker committed after the rebuild's last event (from the live
    archive, which holds exactly the committed events)."""
    before = stats.events
    live_row = next((r for r in await _live_tracking(live) if r["name"] == name), None)
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


async def _finish(
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
        result.caught_up += await _catch_up(live, rebuild, name, result.stats)
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
        result.caught_up += await _catch_up(live, rebuild, name, result.stats)
        if had_live_tracking:
            rows = await _live_tracking(live)
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
