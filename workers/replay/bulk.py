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
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import orjson
import structlog
from pydantic import TypeAdapter

from registry_core.contracts.codec import decode_event
from registry_core.domain.artifacts import ArtifactRef, card_prefix
from registry_core.domain.cards import CARD_CLASSES, CardRecord, RegistryType
from registry_core.domain.events import (
    EVENT_SCHEMA_VERSION,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    SequencerStarted,
)
from registry_core.domain.versioning import sort_parts
from registry_core.persistence.db import Q
from registry_core.persistence.projection import (
    LoggedEvent,
    lineage_rows,
    metric_rows,
    project,
)
from workers.replay.schemas import OPERATIONAL_TABLES, ident

log = structlog.get_logger("opsml.replay")

# ---- what the fast path accepts -----------------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_is_uuid = _UUID.fullmatch
# pydantic's JSON form of an aware UTC datetime: seconds, optional 6-digit fraction, "Z"
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
_is_ts = _TS.fullmatch
_from_iso = datetime.fromisoformat

_KEYS = {
    "card_registered": frozenset(CardRegistered.model_fields),
    "command_rejected": frozenset(CommandRejected.model_fields),
    "sequencer_started": frozenset(SequencerStarted.model_fields),
}
_CARD_KEYS = frozenset(CardRecord.model_fields)
_REGISTRIES = frozenset(r.value for r in RegistryType)
# card type -> its lineage attributes (lineage_rows is only called when one of them is set)
_LINEAGE_FIELDS = {name: tuple(cls.lineage_fields) for name, cls in CARD_CLASSES.items()}
_artifacts_adapter: TypeAdapter[list[ArtifactRef]] = TypeAdapter(list[ArtifactRef])

# Column lists, in the order of the tuples built below (the live projection's INSERTs).
COLUMNS: dict[str, tuple[str, ...]] = {
    "event_log": (
        "event_offset", "event_id", "event_type", "command_id", "epoch", "schema_version",
        "applied", "occurred_at", "payload",
    ),
    "cards": (
        "uid", "registry", "space", "name", "version", "major", "minor", "patch", "pre_key",
        "card_type", "tags", "description", "metadata", "attributes", "status", "created_at",
        "command_id", "actor", "event_offset", "artifacts",
    ),
    "command_outcomes": (
        "command_id", "status", "uid", "version", "error_code", "reason", "registry", "space",
        "name", "command_offset", "event_offset", "decided_at",
    ),
    "lineage": ("uid", "ref_uid", "field"),
    "run_metrics": ("uid", "seq", "name", "step", "value", "logged_at"),
    "artifacts": ("registry", "space", "sha256", "key", "size", "uid"),
}  # fmt: skip


# What the final ANALYZE covers (every column but the jsonb documents).
ANALYZE_COLUMNS = {
    t: tuple(c for c in cols if c not in ("payload", "tags", "metadata", "attributes", "artifacts"))
    for t, cols in COLUMNS.items()
}


class Deferred(Exception):
    """This event is not in the fast path's exact shape: project it through the models."""


def _str_or_none(v: object) -> bool:
    return v is None or type(v) is str


def _str_values(d: dict[str, Any]) -> bool:
    for v in d.values():
        if type(v) is not str:
            return False
    return True


def _ts_or_none(v: object) -> bool:
    return v is None or (type(v) is str and _is_ts(v) is not None)


def _check_base(d: dict[str, Any], keys: frozenset[str]) -> None:
    if (
        d.keys() != keys
        or d["schema_version"] != EVENT_SCHEMA_VERSION
        or type(d["schema_version"]) is not int
        or type(d["epoch"]) is not int
        or d["epoch"] < 0
        or not (d["command_offset"] is None or type(d["command_offset"]) is int)
        or type(d["event_id"]) is not str
        or not _is_uuid(d["event_id"])
        or type(d["command_id"]) is not str
        or not _is_uuid(d["command_id"])
        or type(d["occurred_at"]) is not str
        or not _is_ts(d["occurred_at"])
    ):
        raise Deferred


def _check_card(c: Any) -> None:
    if (
        type(c) is not dict
        or c.keys() != _CARD_KEYS
        or type(c["uid"]) is not str
        or not _is_uuid(c["uid"])
        or type(c["command_id"]) is not str
        or not _is_uuid(c["command_id"])
        or c["registry"] not in _REGISTRIES
        or type(c["space"]) is not str
        or type(c["name"]) is not str
        or type(c["version"]) is not str
        or type(c["card_type"]) is not str
        or type(c["tags"]) is not dict
        or not _str_values(c["tags"])
        or not _str_or_none(c["description"])
        or type(c["metadata"]) is not dict
        or type(c["attributes"]) is not dict
        or type(c["artifacts"]) is not list
        or c["status"] not in ("active", "deleted")
        or type(c["created_at"]) is not str
        or not _is_ts(c["created_at"])
        or not _ts_or_none(c["updated_at"])
        or not _str_or_none(c["actor"])
    ):
        raise Deferred


# ---- rows ----------------------------------------------------------------------------------------


@dataclass
class Rows:
    tables: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {t: [] for t in COLUMNS}
    )

    def count(self) -> int:
        return sum(len(v) for v in self.tables.values())


@dataclass
class BulkState:
    """What `project()` keeps in tracking and command_outcomes, kept in memory for the load."""

    max_epoch: int
    max_offset: int = -1
    max_cmd: int = -1
    decided: set[str] = field(default_factory=set)
    artifact_keys: set[tuple[str, str, str, str]] = field(default_factory=set)
    sort_cache: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)
    deferred: list[LoggedEvent] = field(default_factory=list)
    fast: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # seconds: copy, indexes, ...
    index_seconds: dict[str, float] = field(default_factory=dict)


class Decoder:
    """(offset, payload) -> row tuples for the fast path, LoggedEvents for the rest."""

    def __init__(self, state: BulkState, stats: Any) -> None:
        self.s = state
        self.stats = stats

    def batch(self, batch: list[tuple[int, Any]]) -> Rows:
        rows = Rows()
        t = rows.tables
        archive, cards, outcomes = t["event_log"], t["cards"], t["command_outcomes"]
        for offset, payload in batch:
            if payload is None:
                self.stats.undecodable += 1  # a gap placeholder (see republish) or empty record
                continue
            try:
                d = orjson.loads(payload)
                if type(d) is not dict:
                    raise Deferred
                kind = d.get("type")
                if type(kind) is not str or kind not in _KEYS:
                    raise Deferred
                keys = _KEYS[kind]
                _check_base(d, keys)
                if kind == "card_registered":
                    _check_card(d["card"])
                elif kind == "command_rejected":
                    if (
                        type(d["error_code"]) is not str
                        or type(d["reason"]) is not str
                        or not (d["registry"] is None or d["registry"] in _REGISTRIES)
                        or not _str_or_none(d["space"])
                        or not _str_or_none(d["name"])
                    ):
                        raise Deferred
                extra = self._card_extras(d["card"]) if kind == "card_registered" else None
            except (Deferred, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self._defer(offset, payload)
                continue
            self._fast(d, kind, offset, payload, extra, archive, cards, outcomes, t)
        return rows

    def _card_extras(self, c: dict[str, Any]) -> tuple[Any, ...]:
        """Parts of the card row that can fail (version, artifacts): before any state changes."""
        v = c["version"]
        parts = self.s.sort_cache.get(v)
        if parts is None:
            parts = self.s.sort_cache[v] = sort_parts(v)
        arts = c["artifacts"]
        if arts:
            refs = _artifacts_adapter.validate_python(arts)
            if [a.model_dump(mode="json") for a in refs] != arts:
                raise Deferred
        return parts

    def _defer(self, offset: int, payload: Any) -> None:
        try:
            event = decode_event(payload)
        except Exception as exc:  # the live catch-up skips these too
            self.stats.undecodable += 1
            log.warning("skipping an undecodable event", offset=offset, error=str(exc))
            return
        applied = event.epoch >= self.s.max_epoch
        self._count(applied)
        if applied:
            self.s.max_epoch = event.epoch
            if isinstance(event, CardRegistered | CardUpdated | CardDeleted | CommandRejected):
                cid = str(event.command_id)
                if cid in self.s.decided:
                    applied = False  # project() finds it decided too
                else:
                    self.s.decided.add(cid)
        self.s.deferred.append(LoggedEvent(offset, event, applied))

    def _count(self, applied: bool) -> None:
        if applied:
            self.stats.applied += 1
        else:
            self.stats.fenced += 1

    def _fast(
        self,
        d: dict[str, Any],
        kind: str,
        offset: int,
        payload: Any,
        parts: Any,
        archive: list[tuple[Any, ...]],
        cards: list[tuple[Any, ...]],
        outcomes: list[tuple[Any, ...]],
        t: dict[str, list[tuple[Any, ...]]],
    ) -> None:
        s = self.s
        epoch = d["epoch"]
        cid = d["command_id"]
        applied = epoch >= s.max_epoch
        self._count(applied)  # fenced = older epoch (a repeated decision counts as applied)
        if applied:
            s.max_epoch = epoch
            if kind != "sequencer_started":
                if cid in s.decided:
                    applied = False  # a second copy of a decision: the first one won
                else:
                    s.decided.add(cid)
        s.fast += 1
        occurred = _from_iso(d["occurred_at"])
        archive.append((
            offset, d["event_id"], kind, cid, epoch, EVENT_SCHEMA_VERSION, applied, occurred,
            payload.decode() if type(payload) is bytes else payload,
        ))  # fmt: skip
        if offset > s.max_offset:
            s.max_offset = offset
        if not applied:
            return
        cmd = d["command_offset"]
        if cmd is not None and cmd > s.max_cmd:
            s.max_cmd = cmd
        if kind == "card_registered":
            c = d["card"]
            uid = c["uid"]
            major, minor, patch, pre_key = parts
            arts = c["artifacts"]
            cards.append((
                uid, c["registry"], c["space"], c["name"], c["version"], major, minor, patch,
                pre_key, c["card_type"], orjson.dumps(c["tags"]).decode(), c["description"],
                orjson.dumps(c["metadata"]).decode(), orjson.dumps(c["attributes"]).decode(),
                c["status"], _from_iso(c["created_at"]), c["command_id"], c["actor"], offset,
                orjson.dumps(arts).decode(),
            ))  # fmt: skip
            outcomes.append((
                cid, "registered", uid, c["version"], None, None, c["registry"], c["space"],
                c["name"], cmd, offset, occurred,
            ))  # fmt: skip
            if arts:
                prefix = card_prefix(c["registry"], c["space"], c["name"], c["version"])
                for a in arts:
                    key = (c["registry"], c["space"], a["sha256"], f"{prefix}/{a['path']}")
                    if key not in s.artifact_keys:  # ON CONFLICT DO NOTHING
                        s.artifact_keys.add(key)
                        t["artifacts"].append((*key, a["size"], uid))
            attrs = c["attributes"]
            if attrs:
                ns = SimpleNamespace(uid=uid, card_type=c["card_type"], attributes=attrs)
                for f in _LINEAGE_FIELDS.get(c["card_type"], ()):
                    if attrs.get(f):  # (a loop: cheaper than any() over a generator)
                        lin = lineage_rows(ns)  # type: ignore[arg-type]
                        t["lineage"].extend(dict.fromkeys(lin))  # ON CONFLICT DO NOTHING
                        break
                if attrs.get("metrics"):
                    t["run_metrics"].extend(metric_rows(ns))  # type: ignore[arg-type]
        elif kind == "command_rejected":
            outcomes.append((
                cid, "rejected", None, None, d["error_code"], d["reason"], d["registry"],
                d["space"], d["name"], cmd, offset, occurred,
            ))  # fmt: skip


# Columns of a read table that `project()` does not write on insert (rewrites set them).
NOT_INSERTED = {"cards": {"updated_at"}}


async def bulk_supported(conn: asyncpg.Connection, schema: str) -> bool:
    """The bulk path knows exactly the tables and columns the migrations create today. A later
    migration that adds a read table or a column makes it step aside (the live projection is
    used, batch by batch) until this module learns the new shape."""
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1",
        schema,
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        if r["table_name"] not in OPERATIONAL_TABLES:
            found.setdefault(r["table_name"], set()).add(r["column_name"])
    expected = {t: set(c) | NOT_INSERTED.get(t, set()) for t, c in COLUMNS.items()}
    if found != expected:
        log.warning(
            "the read tables differ from what the bulk path knows: projecting batch by batch",
            unknown=sorted(set(found) ^ set(expected)),
        )
        return False
    return True


# ---- indexes -------------------------------------------------------------------------------------


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
    cons = await conn.fetch(
        "SELECT c.relname AS tbl, k.conname AS name, k.contype AS type, k.conindid AS idx,"
        " pg_get_indexdef(k.conindid) AS def FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_class i ON i.oid = k.conindid"
        " WHERE n.nspname = $1 AND k.contype IN ('p', 'u') AND c.relname <> ALL($2::text[])"
        " AND i.relname = k.conname ORDER BY k.contype, c.relname, k.conname",
        schema,
        skip,
    )
    backing = {r["idx"] for r in cons}
    idx = await conn.fetch(
        "SELECT t.relname AS tbl, i.relname AS name, pg_get_indexdef(i.oid) AS def, i.oid AS oid"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = $1 AND t.relname <> ALL($2::text[]) ORDER BY t.relname, i.relname",
        schema,
        skip,
    )
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


async def build_structures(
    conns: list[asyncpg.Connection], defs: list[IndexDef]
) -> dict[str, float]:
    """Rebuild them on several connections at once: every one as CREATE [UNIQUE] INDEX (several
    may run on one table at the same time: they take a SHARE lock), the largest tables first;
    then the primary keys and unique constraints are attached to their indexes (a catalog
    change). Returns seconds per index."""
    weight = {"cards": 0, "event_log": 1, "command_outcomes": 2}
    queue: asyncio.Queue[IndexDef] = asyncio.Queue()
    for d in sorted(defs, key=lambda d: (weight.get(d.table, 3), d.name)):
        queue.put_nowait(d)
    took: dict[str, float] = {}

    async def work(conn: asyncpg.Connection) -> None:
        while not queue.empty():
            d = queue.get_nowait()
            t0 = time.perf_counter()
            await conn.execute(d.create)
            took[d.name] = round(time.perf_counter() - t0, 3)

    await asyncio.gather(*(work(c) for c in conns))
    async with conns[0].transaction():
        for d in defs:
            if d.attach is not None:
                await conns[0].execute(d.attach)
    return took


# ---- the load ------------------------------------------------------------------------------------

QUEUE_BATCHES = 4  # decoded batches waiting per table (back-pressure on the decoder)


async def _rows_from(queue: asyncio.Queue[list[tuple[Any, ...]] | None]) -> AsyncIterator[Any]:
    while True:
        chunk = await queue.get()
        if chunk is None:
            return
        for row in chunk:
            yield row


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
    admin = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    copiers: dict[str, asyncpg.Connection] = {}
    try:
        defs = await secondary_structures(admin, schema)
        await drop_structures(admin, defs)
        for table in COLUMNS:
            copiers[table] = await asyncpg.connect(
                dsn, server_settings={"search_path": schema, "synchronous_commit": "off"}
            )
        queues: dict[str, asyncio.Queue[list[tuple[Any, ...]] | None]] = {
            t: asyncio.Queue(QUEUE_BATCHES) for t in COLUMNS
        }

        async def copy(table: str) -> None:
            await copiers[table].copy_records_to_table(
                table, records=_rows_from(queues[table]), columns=list(COLUMNS[table]),
                schema_name=schema,
            )  # fmt: skip

        async def feed() -> None:
            try:
                async for batch in batches:
                    rows = decoder.batch(batch)
                    for table, chunk in rows.tables.items():
                        if chunk:
                            await queues[table].put(chunk)
                    stats.events += len(batch)
                    if progress is not None:
                        progress(len(batch))
            finally:
                for q in queues.values():
                    await q.put(None)

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed())
            for table in COLUMNS:
                tg.create_task(copy(table))
        t1 = time.perf_counter()
        for conn in copiers.values():
            await conn.execute("SET maintenance_work_mem = '256MB'")
        state.index_seconds = await build_structures(list(copiers.values())[:3], defs)
        t2 = time.perf_counter()
        # Statistics for the planner right after a switch, of the columns queries filter and
        # join on (the jsonb documents are left to autovacuum, which analyses a freshly loaded
        # table soon anyway): ANALYZE of the large payloads costs more than the rest together.
        await admin.execute(
            "ANALYZE " + ", ".join(
                f"{ident(schema)}.{ident(t)} ({', '.join(ident(c) for c in cols)})"
                for t, cols in ANALYZE_COLUMNS.items()
            )
        )  # fmt: skip
        state.phases.update(
            read_decode_copy=t1 - t0, indexes=t2 - t1, analyze=time.perf_counter() - t2
        )
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
    log.info(
        "bulk load", fast=state.fast, deferred=len(state.deferred), indexes=len(defs),
        **{f"{k}_s": round(v, 2) for k, v in state.phases.items()},
        slowest_indexes=sorted(state.index_seconds.items(), key=lambda kv: -kv[1])[:4],
    )  # fmt: skip
    return state
