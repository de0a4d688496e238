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

_U = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# pydantic's JSON form of an aware UTC datetime: seconds, optional 6-digit fraction, "Z"
_T = "[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](?:[.][0-9]{6})?Z"
_is_uuid = re.compile(_U).fullmatch
_is_ts = re.compile(_T).fullmatch
_from_iso = datetime.fromisoformat
_PG_EPOCH = datetime(2000, 1, 1)  # Postgres' binary timestamps count microseconds from here (UTC)
_seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> microseconds since _PG_EPOCH


def pg_time(ts: str) -> tuple[int]:
    """A UTC timestamp in pydantic's JSON form (checked: seconds, optional 6-digit fraction, "Z")
    as Postgres' binary timestamptz, microseconds since 2000-01-01 UTC, in a 1-tuple (the
    copiers' timestamptz codec, see `copier_codecs`): asyncpg's datetime encoder costs ~1 us a
    value in Python (comparisons with infinity, astimezone, a timedelta). The date and time are
    parsed by datetime.fromisoformat once per distinct second (ValueError for a non-date)."""
    second = ts[:19]
    base = _seconds.get(second)
    if base is None:
        delta = _from_iso(second) - _PG_EPOCH
        base = (delta.days * 86_400 + delta.seconds) * 1_000_000
        if len(_seconds) >= 100_000:
            _seconds.clear()
        _seconds[second] = base
    return (base + int(ts[20:26]) if len(ts) == 27 else base,)


async def copier_codecs(conn: asyncpg.Connection) -> None:
    """timestamptz as (microseconds since 2000-01-01 UTC,) on a connection that COPYs the rows
    the Decoder builds (see pg_time)."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=tuple, decoder=tuple, format="tuple"
    )


_STATUSES = frozenset(("active", "deleted"))

# The registration hot path (Decoder.batch). Its checks read exactly these keys.
_REGISTERED_FIELDS = frozenset(
    ("schema_version", "event_id", "command_id", "occurred_at", "epoch", "command_offset", "type",
     "card")
)  # fmt: skip
_CARD_FIELDS = frozenset(
    ("uid", "registry", "space", "name", "version", "card_type", "tags", "description",
     "metadata", "attributes", "artifacts", "status", "created_at", "updated_at", "command_id",
     "actor")
)  # fmt: skip
_N_REGISTERED, _N_CARD = len(_REGISTERED_FIELDS), len(_CARD_FIELDS)
# A model that gains a field sends registrations through _check_base/_check_card instead.
_HOT_PATH = _REGISTERED_FIELDS == frozenset(CardRegistered.model_fields) and _CARD_FIELDS == (
    frozenset(CardRecord.model_fields)
)
# The ids and times of a registration (event_id, command_id, occurred_at, card.uid,
# card.command_id, card.created_at) joined by spaces, with every lowercase hex digit mapped to
# "x", must be one of these shapes: six strings of exactly the canonical forms (no shape admits
# a space, a quote, a bracket or a non-ASCII byte, so the text of anything but such strings -
# None, a number, a list, a dict - cannot match).
_HEX = bytes(ord("x") if chr(i) in "0123456789abcdef" else i for i in range(256))
_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_TS_SHAPES = ("xxxx-xx-xxTxx:xx:xxZ", "xxxx-xx-xxTxx:xx:xx.xxxxxxZ")
_REGISTRATION_SHAPES = frozenset(
    f"{_UUID_SHAPE} {_UUID_SHAPE} {a} {_UUID_SHAPE} {_UUID_SHAPE} {b}".encode()
    for a in _TS_SHAPES
    for b in _TS_SHAPES
)

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


# what sends an event to the slow path while it is checked (before any state changes)
_DEFER_ON = (Deferred, orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError)


def _str_or_none(v: object) -> bool:
    return v is None or type(v) is str


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
        or not all(type(v) is str for v in c["tags"].values())
        or not _str_or_none(c["description"])
        or type(c["metadata"]) is not dict
        or type(c["attributes"]) is not dict
        or type(c["artifacts"]) is not list
        or c["status"] not in _STATUSES
        or type(c["created_at"]) is not str
        or not _is_ts(c["created_at"])
        or not (
            c["updated_at"] is None or (type(c["updated_at"]) is str and _is_ts(c["updated_at"]))
        )
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
        loads, is_ts = orjson.loads, _is_ts
        for offset, payload in batch:
            if payload is None:
                self.stats.undecodable += 1  # a gap placeholder (see republish) or empty record
                continue
            try:
                d = loads(payload)
                if type(d) is not dict:
                    raise Deferred
                kind = d.get("type")
                extra: tuple[Any, ...] | None
                if kind == "card_registered" and _HOT_PATH:
                    # _check_base and the card's checks, in fewer operations. Every key of
                    # _REGISTERED_FIELDS / _CARD_FIELDS is read below (KeyError if absent), so
                    # equal lengths mean equal key sets.
                    c = d["card"]
                    epoch = d["epoch"]
                    cmd = d["command_offset"]
                    sv = d["schema_version"]
                    upd = c["updated_at"]
                    desc = c["description"]
                    actor = c["actor"]
                    tags = c["tags"]
                    if (
                        len(d) != _N_REGISTERED
                        or len(c) != _N_CARD
                        or type(sv) is not int
                        or sv != EVENT_SCHEMA_VERSION
                        or type(epoch) is not int
                        or epoch < 0
                        or not (cmd is None or type(cmd) is int)
                        or f"{d['event_id']} {d['command_id']} {d['occurred_at']} {c['uid']}"
                        f" {c['command_id']} {c['created_at']}".encode().translate(_HEX)
                        not in _REGISTRATION_SHAPES
                        or c["registry"] not in _REGISTRIES
                        or type(c["space"]) is not str
                        or type(c["name"]) is not str
                        or type(c["version"]) is not str
                        or type(c["card_type"]) is not str
                        or type(tags) is not dict
                        or type(c["metadata"]) is not dict
                        or type(c["attributes"]) is not dict
                        or type(c["artifacts"]) is not list
                        or c["status"] not in _STATUSES
                        or not (upd is None or (type(upd) is str and is_ts(upd)))
                        or not (desc is None or type(desc) is str)
                        or not (actor is None or type(actor) is str)
                    ):
                        raise Deferred
                    for v in tags.values():
                        if type(v) is not str:
                            raise Deferred
                    extra = self._card_extras(c)
                    # (the shape admits hex letters where digits belong: pg_time's fromisoformat
                    # and int() refuse them, and a well-formed non-date such as month 13)
                    created = pg_time(c["created_at"])
                else:
                    if type(kind) is not str or kind not in _KEYS:
                        raise Deferred
                    _check_base(d, _KEYS[kind])
                    if kind == "command_rejected" and (
                        type(d["error_code"]) is not str
                        or type(d["reason"]) is not str
                        or not (d["registry"] is None or d["registry"] in _REGISTRIES)
                        or not _str_or_none(d["space"])
                        or not _str_or_none(d["name"])
                    ):
                        raise Deferred
                    extra = created = None
                    if kind == "card_registered":
                        _check_card(d["card"])
                        extra = self._card_extras(d["card"])
                        created = pg_time(d["card"]["created_at"])
                occurred = pg_time(d["occurred_at"])  # (a valid form can still be no date)
            except (
                Deferred,
                orjson.JSONDecodeError,
                AttributeError,
                KeyError,
                TypeError,
                ValueError,
            ):
                self._defer(offset, payload)
                continue
            self._fast(
                d, kind, offset, payload, extra, occurred, created, archive, cards, outcomes, t
            )
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
        occurred: tuple[int],
        created: tuple[int] | None,
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
                c["status"], created, c["command_id"], c["actor"], offset,
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
                ns = None
                for f in _LINEAGE_FIELDS.get(c["card_type"], ()):
                    if attrs.get(f):  # (a loop: cheaper than any() over a generator)
                        ns = SimpleNamespace(uid=uid, card_type=c["card_type"], attributes=attrs)
                        lin = lineage_rows(ns)  # type: ignore[arg-type]
                        t["lineage"].extend(dict.fromkeys(lin))  # ON CONFLICT DO NOTHING
                        break
                if attrs.get("metrics"):
                    if ns is None:
                        ns = SimpleNamespace(uid=uid, card_type=c["card_type"], attributes=attrs)
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
        # (contype::text: a "char" column comes back from asyncpg as bytes, b"p" != "p")
        "SELECT c.relname AS tbl, k.conname AS name, k.contype::text AS type, k.conindid AS idx,"
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
        await conn.execute(f"SET max_parallel_maintenance_workers = {int(INDEX_WORKERS)}")
        memory = None
        while not queue.empty():
            name, sql, mem = queue.get_nowait()
            t0 = time.perf_counter()
            if mem is not None and mem != memory:
                await conn.execute(f"SET maintenance_work_mem = '{mem}'")
                memory = mem
            await conn.execute(sql)
            took[name] = round(time.perf_counter() - t0, 3)

    await asyncio.gather(*(work(c) for c in conns))
    async with conns[0].transaction():
        for d in defs:
            if d.attach is not None:
                await conns[0].execute(d.attach)
    return took


# ---- the load ------------------------------------------------------------------------------------

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
