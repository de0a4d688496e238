"""Compare a rebuild with the live tables: an ordered-rows checksum per table, and on a mismatch
the differing rows (a sample) on each side.

No column is excluded: every column of a read table is derived from the events (offsets,
timestamps and ids all travel in the event), so a faithful rebuild is byte-for-byte equal. The
one expected difference is documented in docs/events.md: events a fenced-off sequencer published
after its successor's marker are never read by the live worker (it only reads the log on start),
so only a rebuild archives them (always with applied = false).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from registry_core.persistence.db import Q
from workers.replay.schemas import ident, primary_key, read_tables, tables_in

SAMPLE = 5


@dataclass
class TableDiff:
    table: str
    live_rows: int
    rebuild_rows: int
    live_checksum: str
    rebuild_checksum: str
    only_live: int = 0
    only_rebuild: int = 0
    sample_live: list[dict[str, Any]] = field(default_factory=list)
    sample_rebuild: list[dict[str, Any]] = field(default_factory=list)
    columns_only_live: list[str] = field(default_factory=list)
    columns_only_rebuild: list[str] = field(default_factory=list)
    # event_log rows only in the rebuild that are fenced (applied = false): explained, see above
    fenced_only_rebuild: int = 0

    @property
    def equal(self) -> bool:
        return (
            self.live_checksum == self.rebuild_checksum
            and not self.columns_only_live
            and not self.columns_only_rebuild
        )

    @property
    def explained(self) -> bool:
        """Differences that are exactly the fenced events only a rebuild reads."""
        return (
            not self.equal
            and self.table == "event_log"
            and self.only_live == 0
            and self.only_rebuild == self.fenced_only_rebuild
            and not self.columns_only_live
            and not self.columns_only_rebuild
        )

    def describe(self) -> str:
        if self.equal:
            return f"{self.table}: identical ({self.live_rows} rows, md5 {self.live_checksum})"
        lines = [
            f"{self.table}: DIFFERENT (live {self.live_rows} rows, rebuild {self.rebuild_rows};"
            f" {self.only_live} only in live, {self.only_rebuild} only in rebuild)"
        ]
        if self.columns_only_live or self.columns_only_rebuild:
            lines.append(
                f"  columns only in live: {self.columns_only_live};"
                f" only in rebuild: {self.columns_only_rebuild}"
            )
        if self.explained:
            lines.append(
                "  all of them are fenced events (applied = false) the live worker never read"
            )
        lines += [f"  - live:    {r}" for r in self.sample_live]
        lines += [f"  + rebuild: {r}" for r in self.sample_rebuild]
        return "\n".join(lines)


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> dict[str, str]:
    """Column name -> data type, in column order."""
    rows = await conn.fetch(Q["table_columns"], schema, table)
    return {r["column_name"]: r["data_type"] for r in rows}


def _column(c: str, json_columns: Collection[str]) -> str:
    """A column as compared. A `json` column (the archived payloads) is compared as jsonb: json
    has no equality operator (EXCEPT needs one), and two texts of the same JSON value (key
    order, spacing) are the same event."""
    return f"{ident(c)}::jsonb" if c in json_columns else ident(c)


def _select_list(columns: list[str], json_columns: Collection[str]) -> str:
    return ", ".join(f"{_column(c, json_columns)} AS {ident(c)}" for c in columns)


async def checksum(
    conn: asyncpg.Connection,
    schema: str,
    table: str,
    columns: list[str],
    order: list[str],
    json_columns: Collection[str] = (),
) -> tuple[int, str]:
    """Row count and the md5 of the rows' md5s (of their text forms, columns in the given order)
    in key order. Hashing each row first keeps the aggregated string at 32 bytes a row: the
    rows' text itself would pass Postgres' 1 GB string limit near a million events. The
    `json_columns` are hashed in their jsonb form (see _column)."""
    cols = ", ".join(_column(c, json_columns) for c in columns)
    by = ", ".join(ident(c) for c in order)
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, md5(coalesce(string_agg(md5(ROW({cols})::text), ''"
        f" ORDER BY {by}), '')) AS h FROM {ident(schema)}.{ident(table)}"
    )
    assert row is not None
    return int(row["n"]), str(row["h"])


async def compare_table(
    conn: asyncpg.Connection,
    live: str,
    rebuild: str,
    table: str,
    other: asyncpg.Connection | None = None,
) -> TableDiff:
    """`conn` reads the live side (possibly inside a REPEATABLE READ snapshot), `other` the
    rebuild side; the sample of differing rows is taken by `other`, i.e. from the live tables as
    they are at that moment."""
    other = other or conn
    live_cols = await _columns(conn, live, table)
    rebuild_cols = await _columns(conn, rebuild, table)
    common = [c for c in live_cols if c in rebuild_cols]
    order = [c for c in await primary_key(conn, live, table) if c in common] or [
        c
        for c in common
        if "json" not in (live_cols[c], rebuild_cols[c])  # (no order on json)
    ]
    n_live, h_live = await checksum(conn, live, table, common, order)
    n_rebuild, h_rebuild = await checksum(other, rebuild, table, common, order)
    json_columns = {c for c in common if "json" in (live_cols[c], rebuild_cols[c])}
    if h_live != h_rebuild and json_columns:
        # The texts differ; the same JSON values in another form (key order, spacing, from an
        # older release's encoder) are still the same events: compare them as jsonb.
        n_live, h_live = await checksum(conn, live, table, common, order, json_columns)
        n_rebuild, h_rebuild = await checksum(other, rebuild, table, common, order, json_columns)
    diff = TableDiff(
        table, n_live, n_rebuild, h_live, h_rebuild,
        columns_only_live=[c for c in live_cols if c not in rebuild_cols],
        columns_only_rebuild=[c for c in rebuild_cols if c not in live_cols],
    )  # fmt: skip
    if h_live == h_rebuild:
        return diff
    cols = _select_list(common, json_columns)
    a, b = f"{ident(live)}.{ident(table)}", f"{ident(rebuild)}.{ident(table)}"
    only_live = f"SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}"
    only_rebuild = f"SELECT {cols} FROM {b} EXCEPT ALL SELECT {cols} FROM {a}"
    diff.only_live = int(await other.fetchval(f"SELECT count(*) FROM ({only_live}) AS d"))
    diff.only_rebuild = int(await other.fetchval(f"SELECT count(*) FROM ({only_rebuild}) AS d"))
    diff.sample_live = [dict(r) for r in await other.fetch(f"{only_live} LIMIT {SAMPLE}")]
    diff.sample_rebuild = [dict(r) for r in await other.fetch(f"{only_rebuild} LIMIT {SAMPLE}")]
    if table == "event_log" and "applied" in common:
        diff.fenced_only_rebuild = int(
            await other.fetchval(f"SELECT count(*) FROM ({only_rebuild}) AS d WHERE NOT d.applied")
        )
    return diff


async def compare(
    conn: asyncpg.Connection, live: str, rebuild: str, other: asyncpg.Connection | None = None
) -> list[TableDiff]:
    """Every read table of either schema (a table missing on one side is a difference)."""
    tables = sorted(set(await read_tables(conn, live)) | set(await read_tables(conn, rebuild)))
    present = {s: await tables_in(conn, s) for s in (live, rebuild)}
    diffs = []
    for t in tables:
        if t in present[live] and t in present[rebuild]:
            diffs.append(await compare_table(conn, live, rebuild, t, other))
        else:
            side = "live" if t in present[live] else "rebuild"
            diffs.append(TableDiff(t, 0, 0, f"only in {side}", "-", columns_only_live=["*"]))
    return diffs
