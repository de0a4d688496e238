"""Replay, bulk path: the read tables' primary keys, unique constraints and indexes - read from the
catalog, dropped before the load, rebuilt after it from their exact definitions, several at a
time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from registry_core.persistence.db import Q
from workers.replay.schemas import OPERATIONAL_TABLES, ident


@dataclass(frozen=True)
class IndexDef:
    table: str
    name: str
    create: str  # CREATE [UNIQUE] INDEX ..., exactly as pg_get_indexdef gives it
    drop: str
    attach: str | None = None  # for a constraint: ALTER TABLE ... ADD CONSTRAINT ... USING INDEX


async def secondary_structures(conn: asyncpg.Connection, schema: str) -> list[IndexDef]:
    """Every primary key, unique constraint and index of the schema's read tables."""
    skip = list(OPERATIONAL_TABLES)
    cons = await conn.fetch(Q["key_constraints"], schema, skip)
    backing = {r["idx"] for r in cons}
    idx = await conn.fetch(Q["table_indexes"], schema, skip)
    s = ident(schema)
    out = []
    for r in cons:
        table = f"{s}.{ident(r['tbl'])}"
        kind = "PRIMARY KEY" if r["type"] == "p" else "UNIQUE"
        name = ident(r["name"])
        out.append(
            IndexDef(
                r["tbl"],
                r["name"],
                r["def"],
                f"ALTER TABLE {table} DROP CONSTRAINT {name}",
                f"ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}",
            )
        )
    out += [
        IndexDef(r["tbl"], r["name"], r["def"], f"DROP INDEX {s}.{ident(r['name'])}")
        for r in idx
        if r["oid"] not in backing
    ]
    return out


async def drop_structures(conn: asyncpg.Connection, defs: list[IndexDef]) -> None:
    async with conn.transaction():
        for d in defs:
            await conn.execute(d.drop)


# Index builds: no parallel workers (the builds already run side by side on connections of
# their own; on few cores the workers only split the memory and merge again), memory enough to
# sort 1M rows in memory; the GIN index accumulates its entries in maintenance_work_mem and
# writes them out each time it is full (at 1M cards: 7.3 s with 256MB, 3.1 s with 1GB).
INDEX_MEMORY = "256MB"
GIN_MEMORY = "1GB"
INDEX_WORKERS = 0  # max_parallel_maintenance_workers


def _build_order(d: IndexDef) -> tuple[int, int, int, str]:
    """Longest first (so that the last build does not run alone): GIN, then the large tables'
    indexes, the ones with more columns first."""
    weight = {"cards": 0, "event_log": 1, "command_outcomes": 2}
    gin = " USING gin " in d.create
    return (0 if gin else 1, weight.get(d.table, 3), -d.create.count(","), d.name)


async def build_structures(
    conns: list[asyncpg.Connection],
    defs: list[IndexDef],
    analyze: list[tuple[str, str]] | None = None,
) -> dict[str, float]:
    """Rebuild them on several connections at once: every one as CREATE [UNIQUE] INDEX (several
    may run on one table at the same time: they take a SHARE lock), longest first; then the
    `analyze` statements ((table, ANALYZE ...), after every build, on the same connections: an
    ANALYZE waits for the builds on its table, the other tables' go on meanwhile); then the
    primary keys and unique constraints are attached to their indexes (a catalog change).
    Returns seconds per index (and per "analyze <table>")."""
    jobs: list[tuple[str, str, str | None]] = [
        (d.name, d.create, GIN_MEMORY if " USING gin " in d.create else INDEX_MEMORY)
        for d in sorted(defs, key=_build_order)
    ]
    jobs += [(f"analyze {table}", sql, None) for table, sql in analyze or ()]
    queue: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    took: dict[str, float] = {}

    async def work(conn: asyncpg.Connection) -> None:
        await conn.execute(
            Q["set_session"], "max_parallel_maintenance_workers", str(int(INDEX_WORKERS))
        )
        memory = None
        while not queue.empty():
            name, sql, mem = queue.get_nowait()
            t0 = time.perf_counter()
            if mem is not None and mem != memory:
                await conn.execute(Q["set_session"], "maintenance_work_mem", mem)
                memory = mem
            await conn.execute(sql)
            took[name] = round(time.perf_counter() - t0, 3)

    await asyncio.gather(*(work(c) for c in conns))
    async with conns[0].transaction():
        for d in defs:
            if d.attach is not None:
                await conns[0].execute(d.attach)
    return took
