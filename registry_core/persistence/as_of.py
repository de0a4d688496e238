"""Persistence: the registry as it was at an earlier moment ("as of" an event offset or a time),
answered from the read tables and the event archive with index probes only.

A card existed at offset N if it was registered at or below N (`cards.event_offset`). Its record
then is its current row, unless it was updated or deleted after N (`card_changes`); in that case
it is the record carried by its last change at or below N - or by its registration - read from
the archived event (`event_log`, by primary key). A time is first turned into the offset of the
last event at or before it (`event_log_occurred`). Aliases at N are the last move of each alias
at or below N in `alias_history`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from registry_core.domain.errors import InvalidQuery
from registry_core.persistence.db import Q

# The archived event holding a card's record as of offset {o}, when the card changed after {o}
# (else no row, and the current row is the answer). `{o}` is a $n placeholder, never data.
# (A CASE: the archive is read only for the cards that changed after the moment.)
LATERAL = (
    " LEFT JOIN LATERAL (SELECT CASE WHEN EXISTS (SELECT 1 FROM card_changes y"
    " WHERE y.uid = cards.uid AND y.event_offset > {o}) THEN (SELECT e.payload FROM event_log e"
    " WHERE e.event_offset = (SELECT coalesce(max(x.event_offset), cards.event_offset)"
    " FROM card_changes x WHERE x.uid = cards.uid AND x.event_offset <= {o})) END"
    " AS asof_payload) AS h ON true"
)
# The aliases pointing at each card as of {o}: the aliases moved to the card at or below {o}
# (alias_history_uid: most cards have none) whose next move, if any, came after {o}.
ALIASES = (
    "ARRAY(SELECT DISTINCT ah.alias FROM alias_history ah WHERE ah.uid = cards.uid"
    " AND ah.action = 'set' AND ah.event_offset <= {o} AND NOT EXISTS (SELECT 1"
    " FROM alias_history nx WHERE nx.registry = ah.registry AND nx.space = ah.space"
    " AND nx.name = ah.name AND nx.alias = ah.alias AND nx.event_offset > ah.event_offset"
    " AND nx.event_offset <= {o}) ORDER BY 1) AS aliases"
)
STATUS = "coalesce(h.asof_payload->'card'->>'status', status)"
TAGS = "coalesce((h.asof_payload->'card'->'tags')::jsonb, tags)"
# the fields an update or delete changes (the rest of a record never changes)
_MUTABLE = ("tags", "description", "metadata", "attributes", "status", "updated_at")


def parse(value: str | int | datetime | None) -> int | datetime | None:
    """An `as_of` as given: an event offset (an integer, 0 or more) or a time (ISO 8601; a time
    without a zone is UTC). InvalidQuery, saying what is accepted, for anything else."""
    if value is None or isinstance(value, datetime | int):
        if isinstance(value, int) and not 0 <= value < 2**63:
            raise InvalidQuery(f"as_of offset {value} is out of range: use 0 or more")
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value
    text = value.strip()
    if text.isdigit():
        return parse(int(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InvalidQuery(
            f"as_of {shown!r} is neither an event offset (0, 1, ...) nor an ISO 8601 time"
            " ('2026-12-01T14:00:00Z', '2026-12-01')"
        ) from None
    return parse(when)


def _storable(when: datetime) -> datetime:
    if not datetime(1, 1, 2, tzinfo=UTC) <= when <= datetime(9999, 12, 30, tzinfo=UTC):
        raise InvalidQuery("as_of is outside the range of times the registry can hold")
    return when


async def resolve(conn: Any, value: str | int | datetime | None) -> int | None:
    """The event offset an `as_of` stands for (None: now). A time is the last event at or before
    it (-1 when the log has none yet: nothing existed)."""
    parsed = parse(value)
    if parsed is None or isinstance(parsed, int):
        return parsed
    return int(await conn.fetchval(Q["offset_at_time"], _storable(parsed)))


async def alias_card(
    conn: Any, registry: str, space: str, name: str, alias: str, value: str | int | datetime
) -> tuple[dict[str, Any] | None, str]:
    """The card an alias pointed at as of `value` (an offset or a time), with its record and
    aliases then, in one round trip; and the moment, for a message (None: no alias then)."""
    parsed = parse(value)
    assert parsed is not None
    offset, when = (parsed, None) if isinstance(parsed, int) else (None, _storable(parsed))
    row = await conn.fetchrow(Q["alias_card_as_of"], registry, space, name, alias, offset, when)
    moment = f"event offset {offset}" if when is None else when.isoformat()
    if row is None:
        return None, moment
    card = overlay(dict(row))
    card.pop("asof_offset")
    return card, moment


def overlay(row: dict[str, Any]) -> dict[str, Any]:
    """A card row as of the moment asked about: the archived record's mutable fields where the
    card changed later (the row's `asof_payload`), else the row as it is."""
    payload = row.pop("asof_payload", None)
    if payload is None:
        return row
    card = (orjson.loads(payload) if isinstance(payload, str | bytes) else payload)["card"]
    for k in _MUTABLE:
        if k in card:
            v = card[k]
            row[k] = datetime.fromisoformat(v) if k == "updated_at" and v else v
    return row


async def get_card(conn: Any, uid: UUID, offset: int) -> dict[str, Any] | None:
    """One card as of `offset` (None: not registered yet then)."""
    row = await conn.fetchrow(Q["get_card_as_of"], uid, offset)
    return overlay(dict(row)) if row is not None else None
