"""Replay, bulk path: the decoder - (offset, payload) batches into row tuples for the tables'
COPY (the fast path), and `LoggedEvent`s for `project()` (everything else), with the
projection's rules kept in memory (`BulkState`): the epoch fence, first decision wins, artifact
de-duplication."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from registry_core.domain.artifacts import card_prefix
from registry_core.domain.events import EVENT_SCHEMA_VERSION
from registry_core.domain.versioning import sort_parts
from registry_core.messaging import EpochFence, EventDecoder
from registry_core.persistence import tables
from registry_core.persistence.projection import LoggedEvent, lineage_rows, metric_rows
from registry_core.persistence.rows import has_outcome
from workers.replay.shapes import (
    HEX,
    HOT_PATH,
    KEYS,
    LINEAGE_FIELDS,
    N_CARD,
    N_REGISTERED,
    REGISTRATION_SHAPES,
    REGISTRIES,
    STATUSES,
    Deferred,
    artifacts_adapter,
    check_base,
    check_card,
    pg_time,
    str_or_none,
)
from workers.replay.shapes import (
    is_ts as is_timestamp,
)


@dataclass
class Rows:
    tables: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {t: [] for t in tables.INSERTED}
    )

    def count(self) -> int:
        return sum(len(v) for v in self.tables.values())


@dataclass
class BulkState(EpochFence):
    """What `project()` keeps in tracking and command_outcomes, kept in memory for the load. It
    is the epoch fence too: the fast path applies the rule inline, the slow path through the
    shared decoder (`EventDecoder`), on the same running maximum."""

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
        self.events = EventDecoder(state, stats)  # the slow path: decode, skip, fence

    def batch(self, batch: list[tuple[int, Any]]) -> Rows:
        rows = Rows()
        t = rows.tables
        archive, cards, outcomes = t["event_log"], t["cards"], t["command_outcomes"]
        loads, is_ts = orjson.loads, is_timestamp
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
                if kind == "card_registered" and HOT_PATH:
                    # check_base and the card's checks, in fewer operations. Every key of
                    # REGISTERED_FIELDS / CARD_FIELDS is read below (KeyError if absent), so
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
                        len(d) != N_REGISTERED
                        or len(c) != N_CARD
                        or type(sv) is not int
                        or sv != EVENT_SCHEMA_VERSION
                        or type(epoch) is not int
                        or epoch < 0
                        or not (cmd is None or type(cmd) is int)
                        or f"{d['event_id']} {d['command_id']} {d['occurred_at']} {c['uid']}"
                        f" {c['command_id']} {c['created_at']}".encode().translate(HEX)
                        not in REGISTRATION_SHAPES
                        or c["registry"] not in REGISTRIES
                        or type(c["space"]) is not str
                        or type(c["name"]) is not str
                        or type(c["version"]) is not str
                        or type(c["card_type"]) is not str
                        or type(tags) is not dict
                        or type(c["metadata"]) is not dict
                        or type(c["attributes"]) is not dict
                        or type(c["artifacts"]) is not list
                        or c["status"] not in STATUSES
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
                    if type(kind) is not str or kind not in KEYS:
                        raise Deferred
                    check_base(d, KEYS[kind])
                    if kind == "command_rejected" and (
                        type(d["error_code"]) is not str
                        or type(d["reason"]) is not str
                        or not (d["registry"] is None or d["registry"] in REGISTRIES)
                        or not str_or_none(d["space"])
                        or not str_or_none(d["name"])
                    ):
                        raise Deferred
                    extra = created = None
                    if kind == "card_registered":
                        check_card(d["card"])
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
            refs = artifacts_adapter.validate_python(arts)
            if [a.model_dump(mode="json") for a in refs] != arts:
                raise Deferred
        return parts

    def _defer(self, offset: int, payload: Any) -> None:
        got = self.events.decode(offset, payload)
        if got is None:
            return  # (counted as undecodable; the live catch-up skips these too)
        event, applied = got.event, got.applied
        if applied and has_outcome(event):
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
                for f in LINEAGE_FIELDS.get(c["card_type"], ()):
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
