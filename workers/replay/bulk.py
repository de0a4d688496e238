"""The replay's bulk path: events straight into the fresh schema's tables with COPY.

The live projection (`registry_core.persistence.projection.project`) decodes every event through
its pydantic model, re-encodes it for the archive and INSERTs each batch into tables that carry
all their indexes. A rebuild writes into *empty, private* tables, so it can do much less:

* **Decode with orjson into row tuples.** An event takes the fast path only when it is exactly
  what the sequencer's `codec.encode` writes for the current schema version: the key sets of the
  event (and of its card and artifacts) equal the models' fields, every uuid and timestamp is in
  pydantic's canonical form, every scalar has the model's type. Such a payload *is*
  `model_dump(mode="json")` of the model it decodes to, so the archived payload can be the bytes
  as read, and the rows are built from the dict the same way `project()` builds them from the
  model. Anything else - updates, deletes (and the metrics/lineage they rewrite), old schema
  versions, unusual values - is *deferred*: decoded with `decode_event` and projected by the live
  `project()` itself, in log order, after the bulk load (updates and deletes are rare, and only
  ever follow their card's registration).
* **COPY into tables without secondary indexes.** Before the load, every primary key, unique
  constraint and index of the rebuild's read tables is dropped (definitions kept); after it they
  are rebuilt from those exact definitions (same names, same SQL), then the tables are analysed.
  A duplicate that a constraint would have refused row by row is refused by the rebuilt
  constraint instead, and the replay fails as the live projection would.
* **Pipelined.** One long-running COPY per table, each on its own connection, fed through a
  bounded queue while the next events are being read and decoded: Postgres parses and stores one
  batch while Python decodes the next.

The projection's rules are kept: an event whose epoch is lower than the highest epoch seen so far
is archived with applied = false (fenced); the first outcome of a command wins, later copies are
archived as not applied (the set of decided command ids is kept in memory, exactly as `project()`
checks `command_outcomes`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import structlog

from registry_core.persistence import tables
from registry_core.persistence.db import Q
from registry_core.persistence.projection import project
from workers.replay.decoder import BulkState, Decoder, Rows
from workers.replay.indexes import build_structures, drop_structures, secondary_structures
from workers.replay.schemas import OPERATIONAL_TABLES, ident
from workers.replay.shapes import Deferred, pg_time

__all__ = ["COLUMNS", "BulkState", "Decoder", "Deferred", "Rows", "bulk_load", "bulk_supported",
           "copier_codecs", "pg_time"]  # fmt: skip

log = structlog.get_logger("opsml.replay")

# The tables the load writes, and their columns in the order of the decoder's tuples.
COLUMNS = tables.INSERTED

# What the final ANALYZE covers (every column but the jsonb documents).
ANALYZE_COLUMNS = {
    t: tuple(c for c in cols if c not in ("payload", "tags", "metadata", "attributes", "artifacts"))
    for t, cols in COLUMNS.items()
}


async def copier_codecs(conn: asyncpg.Connection) -> None:
    """timestamptz as (microseconds since 2000-01-01 UTC,) on a connection that COPYs the rows
    the Decoder builds (see pg_time)."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=tuple, decoder=tuple, format="tuple"
    )


async def bulk_supported(conn: asyncpg.Connection, schema: str) -> bool:
    """The bulk path knows exactly the tables and columns the migrations create today. A later
    migration that adds a read table or a column makes it step aside (the live projection is
    used, batch by batch) until this module learns the new shape."""
    rows = await conn.fetch(Q["schema_columns"], schema)
    found: dict[str, set[str]] = {}
    for r in rows:
        if r["table_name"] not in OPERATIONAL_TABLES:
            found.setdefault(r["table_name"], set()).add(r["column_name"])
    expected = tables.read_table_columns()
    if found != expected:
        log.warning(
            "the read tables differ from what the bulk path knows: projecting batch by batch",
            unknown=sorted(set(found) ^ set(expected)),
        )
        return False
    return True


QUEUE_BATCHES = 4  # decoded batches waiting per table (back-pressure on the decoder)
# Tables whose rows carry timestamps as pg_time tuples (run_metrics' come from metric_rows)
TIMES_AS_TUPLES = ("event_log", "cards", "command_outcomes")


async def bulk_load(
    dsn: str,
    schema: str,
    batches: AsyncIterator[list[tuple[int, Any]]],
    *,
    tracking_name: str,
    max_epoch: int,
    stats: Any,
    progress: Callable[[int], None] | None = None,
    connect: Callable[..., Any],
) -> BulkState:
    """Load every event of `batches` into `schema` (fresh, empty read tables), then rebuild the
    indexes, project the deferred events with `project()`, and set the tracking row."""
    state = BulkState(max_epoch=max_epoch)
    decoder = Decoder(state, stats)
    marks: list[tuple[str, float]] | None = getattr(stats, "marks", None)
    admin = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    copiers: dict[str, asyncpg.Connection] = {}
    try:
        defs = await secondary_structures(admin, schema)
        await drop_structures(admin, defs)
        for table in COLUMNS:
            copiers[table] = await asyncpg.connect(
                dsn, server_settings={"search_path": schema, "synchronous_commit": "off"}
            )
            if table in TIMES_AS_TUPLES:
                await copier_codecs(copiers[table])
        queues: dict[str, asyncio.Queue[list[tuple[Any, ...]] | None]] = {
            t: asyncio.Queue(QUEUE_BATCHES) for t in COLUMNS
        }

        async def copy(table: str) -> None:
            # One COPY per decoded batch (a list: asyncpg encodes it in one C loop; an async
            # iterator of rows costs a coroutine step per row), all in one transaction.
            conn, queue, columns = copiers[table], queues[table], list(COLUMNS[table])
            async with conn.transaction():
                while (chunk := await queue.get()) is not None:
                    await conn.copy_records_to_table(
                        table, records=chunk, columns=columns, schema_name=schema
                    )

        async def feed() -> None:
            # (on an error the task group cancels the copies: their transactions roll back)
            async for batch in batches:
                rows = decoder.batch(batch)
                for table, chunk in rows.tables.items():
                    if chunk:
                        await queues[table].put(chunk)
                stats.events += len(batch)
                if progress is not None:
                    progress(len(batch))
            for q in queues.values():
                await q.put(None)

        t0 = time.perf_counter()
        # The load allocates ~10 tracked containers per event (decoded dicts, row tuples) and
        # creates no reference cycles: the cyclic collector's passes over the rows in flight
        # cost ~10% of the decoding. Paused for the load, restored after.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(feed())
                for table in COLUMNS:
                    tg.create_task(copy(table))
        finally:
            if gc_was_enabled:
                gc.enable()
        t1 = time.perf_counter()
        # Statistics for the planner right after a switch, of the columns queries filter and
        # join on (the jsonb documents are left to autovacuum, which analyses a freshly loaded
        # table soon anyway): ANALYZE of the large payloads costs more than the rest together.
        # One ANALYZE per table, with the index builds (see build_structures).
        analyze = [
            (t, f"ANALYZE {ident(schema)}.{ident(t)} ({', '.join(ident(c) for c in cols)})")
            for t, cols in sorted(ANALYZE_COLUMNS.items(), key=lambda tc: tc[0] == "cards")
        ]
        state.index_seconds = await build_structures(list(copiers.values())[:3], defs, analyze)
        t2 = time.perf_counter()
        state.phases.update(read_decode_copy=t1 - t0, indexes_and_analyze=t2 - t1)
        if marks is not None:
            marks += [("read_decode_copy", t1), ("indexes_and_analyze", t2)]
    finally:
        for conn in copiers.values():
            await conn.close()
        await admin.close()
    t_deferred = time.perf_counter()
    conn = await connect(dsn, schema)
    try:
        await conn.execute(
            Q["update_tracking"], tracking_name, state.max_cmd, state.max_offset, state.max_epoch
        )
        # Updates, deletes and anything not in the fast path's exact shape: the live projection,
        # in log order, on top of the loaded tables (their constraints and indexes are back).
        for i in range(0, len(state.deferred), 2000):
            await project(
                conn, tracking_name=tracking_name, epoch=None, events=state.deferred[i : i + 2000]
            )
    finally:
        await conn.close()
    state.phases["deferred"] = time.perf_counter() - t_deferred
    if marks is not None:
        marks.append(("deferred", t_deferred + state.phases["deferred"]))
    log.info(
        "bulk load", fast=state.fast, deferred=len(state.deferred), indexes=len(defs),
        **{f"{k}_s": round(v, 2) for k, v in state.phases.items()},
        slowest_indexes=sorted(state.index_seconds.items(), key=lambda kv: -kv[1])[:4],
    )  # fmt: skip
    return state
