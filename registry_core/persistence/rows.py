"""Persistence: the rows an event becomes in each read table (pure functions of the event), and
their JSON form for `project_batch`."""

from __future__ import annotations

import functools
from datetime import datetime
from uuid import UUID

import orjson
import structlog

from registry_core.domain.artifacts import card_prefix
from registry_core.domain.cards import CARD_CLASSES, CardRecord, lineage_uids
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
)
from registry_core.domain.versioning import sort_parts
from registry_core.persistence import tables

log = structlog.get_logger("registry_core.persistence.projection")

# Version strings repeat across names ("1.3.0" in every name): parse each once.
_sort_parts = functools.lru_cache(maxsize=65_536)(sort_parts)


def card_row(event: CardRegistered, offset: int) -> dict[str, object]:
    c = event.card
    major, minor, patch, pre_key = _sort_parts(c.version)
    return {
        "uid": c.uid, "registry": c.registry.value, "space": c.space, "name": c.name,
        "version": c.version, "major": major, "minor": minor, "patch": patch, "pre_key": pre_key,
        "card_type": c.card_type, "tags": c.tags, "description": c.description,
        "metadata": c.metadata, "attributes": c.attributes, "status": c.status,
        "created_at": c.created_at, "command_id": c.command_id, "actor": c.actor,
        "event_offset": offset,
        "artifacts": [a.model_dump(mode="json") for a in c.artifacts] if c.artifacts else [],
    }  # fmt: skip


def artifact_rows(card: CardRecord) -> list[tuple[object, ...]]:
    if not card.artifacts:
        return []
    prefix = card_prefix(card.registry.value, card.space, card.name, card.version)
    return [
        (card.registry.value, card.space, a.sha256, f"{prefix}/{a.path}", a.size, card.uid)
        for a in card.artifacts
    ]


_OUTCOME_STATUS = {"card_registered": "registered", "card_updated": "updated"}


def outcome_row(event: Event, offset: int) -> dict[str, object] | None:
    if isinstance(event, CardRegistered | CardUpdated | CardDeleted):
        c = event.card
        return {
            "command_id": event.command_id, "status": _OUTCOME_STATUS.get(event.type, "deleted"),
            "uid": c.uid, "version": c.version, "error_code": None, "reason": None,
            "registry": c.registry.value, "space": c.space, "name": c.name,
            "command_offset": event.command_offset, "event_offset": offset,
            "decided_at": event.occurred_at,
        }  # fmt: skip
    if isinstance(event, AliasSet | AliasRemoved):
        return {
            "command_id": event.command_id, "status": event.type, "uid": event.uid,
            "version": event.version, "error_code": None, "reason": None,
            "registry": event.registry.value, "space": event.space, "name": event.name,
            "command_offset": event.command_offset, "event_offset": offset,
            "decided_at": event.occurred_at,
        }  # fmt: skip
    if isinstance(event, CommandRejected):
        return {
            "command_id": event.command_id, "status": "rejected", "uid": None, "version": None,
            "error_code": event.error_code, "reason": event.reason,
            "registry": event.registry.value if event.registry else None, "space": event.space,
            "name": event.name, "command_offset": event.command_offset, "event_offset": offset,
            "decided_at": event.occurred_at,
        }  # fmt: skip
    return None


def lineage_rows(card: CardRecord) -> list[tuple[object, ...]]:
    """The lineage table's rows of a card. A reference that is not a uuid (only a hand-written
    event can carry one: the sequencer validates attributes) gets no row, and a warning; the
    card itself, with its attributes as logged, is projected as usual."""
    cls = CARD_CLASSES.get(card.card_type)
    if cls is None:
        return []
    rows: list[tuple[object, ...]] = []
    for field_name in cls.lineage_fields:
        value = card.attributes.get(field_name)
        if value is None or value == []:
            continue  # nothing referenced (most cards)
        for item in value if isinstance(value, list) else [value]:
            try:
                refs = lineage_uids(cls, {field_name: item})
            except (ValueError, TypeError, AttributeError):
                log.warning(
                    "a lineage reference that is not a uuid: no lineage row",
                    uid=str(card.uid),
                    field=field_name,
                    value=repr(item)[:80],
                )
                continue
            rows.extend((card.uid, ref, field_name) for ref in refs)
    return rows


_INT32 = 2**31 - 1


def metric_rows(card: CardRecord) -> list[tuple[object, ...]]:
    """The run_metrics rows of a card, `seq` being the metric's position in the list. A metric
    the table cannot hold (only a hand-written event can carry one: the sequencer validates
    attributes) gets no row, and a warning; the card keeps it in its attributes."""
    metrics = card.attributes.get("metrics")
    if not metrics:
        return []
    rows: list[tuple[object, ...]] = []
    for seq, m in enumerate(metrics if isinstance(metrics, list) else ()):
        try:
            name, step, ts = m["name"], m.get("step"), m.get("timestamp")
            value = float(m["value"])  # (what the model admits: numbers, numeric text)
            if type(name) is not str or not (
                step is None or (type(step) is int and 0 <= step <= _INT32)
            ):
                raise TypeError("a name that is not text or a step that is not an int32")
            logged_at = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
            if not (logged_at is None or isinstance(logged_at, datetime)):
                raise TypeError("timestamp is not a time")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("a metric the run_metrics table cannot hold: no row", uid=str(card.uid),
                        seq=seq, error=str(exc), metric=repr(m)[:120])  # fmt: skip
            continue
        rows.append((card.uid, seq, name, step, value, logged_at))
    if not isinstance(metrics, list):
        log.warning("metrics that are not a list: no rows", uid=str(card.uid))
    return rows


# Column names of the rows built here, in order (the keys of project_batch's JSON rows; the
# rows are built as dicts with these keys, tests/unit/test_sequencer_fast_paths.py checks them).
ARCHIVE_COLUMNS = tables.EVENT_LOG
CARD_COLUMNS = tables.CARDS
OUTCOME_COLUMNS = tables.COMMAND_OUTCOMES


def json_rows(rows: list[dict[str, object]]) -> str:
    """Rows as one JSON array of objects, for json_populate_recordset (orjson writes UUIDs and
    aware datetimes in forms Postgres reads back exactly; jsonb values nest as JSON)."""
    return orjson.dumps(rows, default=_uuid_text, option=orjson.OPT_NAIVE_UTC).decode()


def _uuid_text(value: object) -> str:
    # asyncpg's own UUID type (records loaded from the database, e.g. an update's target) is
    # a uuid.UUID subclass orjson does not serialise natively.
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot project a value of type {type(value).__name__}")


def has_outcome(event: Event) -> bool:
    """Whether the event decides its command (and so writes a command_outcomes row)."""
    return isinstance(
        event,
        CardRegistered | CardUpdated | CardDeleted | CommandRejected | AliasSet | AliasRemoved,
    )
