"""Replay, bulk path: what the fast path accepts. A payload takes it only when it is exactly what
the sequencer's `codec.encode` writes for the current schema version (see bulk.py); these are the
checks, and the binary timestamp form the COPY connections send (`pg_time`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter

from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import CARD_CLASSES, CardRecord, RegistryType
from registry_core.domain.events import (
    EVENT_SCHEMA_VERSION,
    CardRegistered,
    CommandRejected,
    SequencerStarted,
)

_U = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# pydantic's JSON form of an aware UTC datetime: seconds, optional 6-digit fraction, "Z"
_T = "[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](?:[.][0-9]{6})?Z"
is_uuid = re.compile(_U).fullmatch
is_ts = re.compile(_T).fullmatch
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


STATUSES = frozenset(("active", "deleted"))

# The registration hot path (Decoder.batch). Its checks read exactly these keys.
REGISTERED_FIELDS = frozenset(
    ("schema_version", "event_id", "command_id", "occurred_at", "epoch", "command_offset", "type",
     "card")
)  # fmt: skip
CARD_FIELDS = frozenset(
    ("uid", "registry", "space", "name", "version", "card_type", "tags", "description",
     "metadata", "attributes", "artifacts", "status", "created_at", "updated_at", "command_id",
     "actor")
)  # fmt: skip
N_REGISTERED, N_CARD = len(REGISTERED_FIELDS), len(CARD_FIELDS)
# A model that gains a field sends registrations through check_base/check_card instead.
HOT_PATH = REGISTERED_FIELDS == frozenset(CardRegistered.model_fields) and CARD_FIELDS == (
    frozenset(CardRecord.model_fields)
)
# The ids and times of a registration (event_id, command_id, occurred_at, card.uid,
# card.command_id, card.created_at) joined by spaces, with every lowercase hex digit mapped to
# "x", must be one of these shapes: six strings of exactly the canonical forms (no shape admits
# a space, a quote, a bracket or a non-ASCII byte, so the text of anything but such strings -
# None, a number, a list, a dict - cannot match).
HEX = bytes(ord("x") if chr(i) in "0123456789abcdef" else i for i in range(256))
_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_TS_SHAPES = ("xxxx-xx-xxTxx:xx:xxZ", "xxxx-xx-xxTxx:xx:xx.xxxxxxZ")
REGISTRATION_SHAPES = frozenset(
    f"{_UUID_SHAPE} {_UUID_SHAPE} {a} {_UUID_SHAPE} {_UUID_SHAPE} {b}".encode()
    for a in _TS_SHAPES
    for b in _TS_SHAPES
)

KEYS = {
    "card_registered": frozenset(CardRegistered.model_fields),
    "command_rejected": frozenset(CommandRejected.model_fields),
    "sequencer_started": frozenset(SequencerStarted.model_fields),
}
_CARD_KEYS = frozenset(CardRecord.model_fields)
REGISTRIES = frozenset(r.value for r in RegistryType)
# card type -> its lineage attributes (lineage_rows is only called when one of them is set)
LINEAGE_FIELDS = {name: tuple(cls.lineage_fields) for name, cls in CARD_CLASSES.items()}
artifacts_adapter: TypeAdapter[list[ArtifactRef]] = TypeAdapter(list[ArtifactRef])


class Deferred(Exception):
    """This event is not in the fast path's exact shape: project it through the models."""


# what sends an event to the slow path while it is checked (before any state changes)
DEFER_ON = (Deferred, orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError)


def str_or_none(v: object) -> bool:
    return v is None or type(v) is str


def check_base(d: dict[str, Any], keys: frozenset[str]) -> None:
    if (
        d.keys() != keys
        or d["schema_version"] != EVENT_SCHEMA_VERSION
        or type(d["schema_version"]) is not int
        or type(d["epoch"]) is not int
        or d["epoch"] < 0
        or not (d["command_offset"] is None or type(d["command_offset"]) is int)
        or type(d["event_id"]) is not str
        or not is_uuid(d["event_id"])
        or type(d["command_id"]) is not str
        or not is_uuid(d["command_id"])
        or type(d["occurred_at"]) is not str
        or not is_ts(d["occurred_at"])
    ):
        raise Deferred


def check_card(c: Any) -> None:
    if (
        type(c) is not dict
        or c.keys() != _CARD_KEYS
        or type(c["uid"]) is not str
        or not is_uuid(c["uid"])
        or type(c["command_id"]) is not str
        or not is_uuid(c["command_id"])
        or c["registry"] not in REGISTRIES
        or type(c["space"]) is not str
        or type(c["name"]) is not str
        or type(c["version"]) is not str
        or type(c["card_type"]) is not str
        or type(c["tags"]) is not dict
        or not all(type(v) is str for v in c["tags"].values())
        or not str_or_none(c["description"])
        or type(c["metadata"]) is not dict
        or type(c["attributes"]) is not dict
        or type(c["artifacts"]) is not list
        or c["status"] not in STATUSES
        or type(c["created_at"]) is not str
        or not is_ts(c["created_at"])
        or not (
            c["updated_at"] is None or (type(c["updated_at"]) is str and is_ts(c["updated_at"]))
        )
        or not str_or_none(c["actor"])
    ):
        raise Deferred
