"""Read-model queries for the API. Filters are composed from fixed SQL fragments with $n
parameters (never data in the SQL text), so each filter combination gets its own plan and
every filter is served by an index (see docs/registry.md for the plans)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import orjson

from registry_core.domain.cards import CardRecord
from registry_core.domain.errors import InvalidQuery
from registry_core.domain.versioning import MAX_PART, RELEASE_KEY, parse_constraint
from registry_core.persistence import as_of as history
from registry_core.persistence import tables
from registry_core.persistence.db import Q

CARD_COLUMNS = ", ".join(tables.CARD_READ)
SORT_COLUMNS = "major, minor, patch, pre_key"
BY_PRECEDENCE = ("major", "minor", "patch", "pre_key", "event_offset")
BY_TIME = ("created_at", "event_offset")
MAX_LIMIT = 1000
# the aliases pointing at each listed card (an index probe per row: aliases_uid)
ALIASES_NOW = "ARRAY(SELECT a.alias FROM aliases a WHERE a.uid = cards.uid ORDER BY 1) AS aliases"


def _lateral(placeholder: str) -> str:
    return history.LATERAL.format(o=placeholder)


Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class CardFilter:
    registry: str | None = None
    space: str | None = None
    name: str | None = None
    version: str | None = None
    uid: UUID | None = None
    tags: dict[str, str] = field(default_factory=dict)
    max_date: datetime | None = None
    limit: int = 100
    sort_by_timestamp: bool = False
    ignore_release_candidates: bool = False
    include_deleted: bool = False
    cursor: str | None = None
    as_of: int | None = None  # an event offset: the registry as it was then (as_of.py)


def _encode_cursor(order: tuple[str, ...], row: dict[str, Any]) -> str:
    values = [row[c].isoformat() if isinstance(row[c], datetime) else row[c] for c in order]
    return base64.urlsafe_b64encode(
        orjson.dumps(["t" if order is BY_TIME else "p", values])
    ).decode()


def _decode_cursor(cursor: str, order: tuple[str, ...]) -> list[Any]:
    try:
        kind, values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if kind != ("t" if order is BY_TIME else "p") or len(values) != len(order):
            raise ValueError
        if order is BY_TIME:
            # (in UTC inside the `try`: a time at either end of the calendar whose offset moves it
            # past year 1 or 9999 is refused here as a bad cursor, not later by the database)
            out: list[Any] = [datetime.fromisoformat(values[0]).astimezone(UTC), int(values[1])]
            ints = [out[1]]
        else:
            out = [int(values[0]), int(values[1]), int(values[2]), str(values[3]), int(values[4])]
            ints = out[:3]
            if "\x00" in out[3] or len(out[3]) > 1000:
                raise ValueError
            if not 0 <= out[4] < 2**63:
                raise ValueError
        if any(not 0 <= v <= MAX_PART for v in ints[:3]) and order is not BY_TIME:
            raise ValueError
        if order is BY_TIME and not 0 <= out[1] < 2**63:
            raise ValueError
        return out
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise InvalidQuery(
            "the cursor is not valid for this query: pass back `next_cursor` unchanged, with the"
            " same sort order"
        ) from None


def version_where(version: str, arg: Callable[[Any], str]) -> list[str] | None:
    """The WHERE clauses of a version constraint ('1.*', '^1.2', '>=1.2,<2', an exact version)
    on the cards table's sort columns, `arg` binding each value; None when nothing can match
    (a lower bound beyond the largest storable version). InvalidQuery names the forms."""
    constraint = parse_constraint(version)
    where = [] if constraint.exact is None else [f"version = {arg(constraint.exact)}"]
    for b in constraint.bounds:
        if max(b.key[:3]) > MAX_PART:
            # beyond the largest storable version: "<" always holds, ">" never does
            if b.op in (">", ">="):
                return None
            continue
        params = ", ".join(arg(v) for v in b.key)
        where.append(f"({SORT_COLUMNS}) {b.op} ({params})")
    return where


async def list_cards(conn: Conn, f: CardFilter) -> tuple[list[dict[str, Any]], str | None]:
    """One page of cards matching every filter, newest first; and the cursor of the next page."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.registry is not None:
        where.append(f"registry = {arg(f.registry)}")
    if f.space is not None:
        where.append(f"space = {arg(f.space)}")
    if f.name is not None:
        where.append(f"name = {arg(f.name)}")
    if f.uid is not None:
        where.append(f"uid = {arg(f.uid)}")
    o = None if f.as_of is None else arg(f.as_of)
    if o is not None:
        where.append(f"event_offset <= {o}")
    if not f.include_deleted:
        where.append(f"{'status' if o is None else history.STATUS} = {arg('active')}")
    if f.version is not None:
        clauses = version_where(f.version, arg)
        if clauses is None:
            return [], None
        where.extend(clauses)
    if f.ignore_release_candidates:
        where.append(f"pre_key = {arg(RELEASE_KEY)}")
    if f.tags:
        where.append(f"{'tags' if o is None else history.TAGS} @> {arg(f.tags)}::jsonb")
    if f.max_date is not None:
        where.append(f"created_at <= {arg(f.max_date)}")
    order = BY_TIME if f.sort_by_timestamp else BY_PRECEDENCE
    if f.cursor:
        values = _decode_cursor(f.cursor, order)
        where.append(f"({', '.join(order)}) < ({', '.join(arg(v) for v in values)})")
    limit = max(1, min(f.limit, MAX_LIMIT))
    sql = (
        f"SELECT {CARD_COLUMNS}, {SORT_COLUMNS}, "
        + (
            f"{ALIASES_NOW} FROM cards"
            if o is None
            else f"{history.ALIASES.format(o=o)}, h.asof_payload FROM cards{_lateral(o)}"
        )
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY "
        + ", ".join(f"{c} DESC" for c in order)
        + f" LIMIT {arg(limit + 1)}"
    )
    rows = [dict(r) for r in await conn.fetch(sql, *args)]
    next_cursor = _encode_cursor(order, rows[limit - 1]) if len(rows) > limit else None
    page = rows[:limit]
    for r in page:
        for c in ("major", "minor", "patch", "pre_key"):
            r.pop(c)
    if o is not None:
        for r in page:
            history.overlay(r)
    return page, next_cursor


def record_from_row(row: Any) -> CardRecord:
    data = dict(row)
    data.pop("event_offset", None)
    return CardRecord(**data)


async def get_card(conn: Conn, uid: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get_card"], uid)
    return dict(row) if row else None


async def get_cards(conn: Conn, uids: list[UUID]) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["get_cards"], uids)]


async def get_outcome(conn: Conn, command_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get_outcome"], command_id)
    return dict(row) if row else None


async def get_outcome_with_card(conn: Conn, command_id: UUID) -> dict[str, Any] | None:
    """The outcome and, for a card that exists, the card - one round trip."""
    row = await conn.fetchrow(Q["get_outcome_with_card"], command_id)
    return dict(row) if row else None


async def get_outcomes(conn: Conn, command_ids: list[UUID]) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["get_outcomes"], command_ids)]


async def lineage(conn: Conn, uid: UUID) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Cards this card points at (upstream) and cards pointing at it (downstream)."""
    up = await conn.fetch(Q["lineage_upstream"], uid)
    down = await conn.fetch(Q["lineage_downstream"], uid)
    cards = {c["uid"]: c for c in await get_cards(conn, [r["uid"] for r in [*up, *down]])}
    return {
        "upstream": [(r["field"], cards[r["uid"]]) for r in up if r["uid"] in cards],
        "downstream": [(r["field"], cards[r["uid"]]) for r in down if r["uid"] in cards],
    }


async def run_metrics(
    conn: Conn, uids: list[UUID], names: list[str] | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["run_metrics"], uids, names)]


async def known_artifacts(
    conn: Conn, registry: str, space: str, sha256s: list[str]
) -> list[dict[str, Any]]:
    """The stored copies of these contents in one registry space (for de-duplication)."""
    return [dict(r) for r in await conn.fetch(Q["known_artifacts"], registry, space, sha256s)]
