"""Read-model queries for the API. Filters are composed from fixed SQL fragments with $n
parameters (never data in the SQL text), so each filter combination gets its own plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from registry_core.domain.versioning import parse
from registry_core.persistence.db import Q

CARD_COLUMNS = (
    "uid, registry, space, name, version, card_type, tags, description, metadata, attributes,"
    " status, created_at, command_id, actor, event_offset"
)
NEWEST_FIRST = "major DESC, minor DESC, patch DESC, pre_key DESC, event_offset DESC"
MAX_LIMIT = 1000


@dataclass(frozen=True)
class CardFilter:
    registry: str | None = None
    space: str | None = None
    name: str | None = None
    version: str | None = None
    uid: UUID | None = None
    limit: int = 100


async def list_cards(
    conn: asyncpg.Connection | asyncpg.Pool, f: CardFilter
) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []

    def add(fragment: str, value: Any) -> None:
        args.append(value)
        where.append(fragment.format(n=len(args)))

    if f.registry is not None:
        add("registry = ${n}", f.registry)
    if f.space is not None:
        add("space = ${n}", f.space)
    if f.name is not None:
        add("name = ${n}", f.name)
    if f.uid is not None:
        add("uid = ${n}", f.uid)
    if f.version is not None:
        add("version = ${n}", str(parse(f.version)))
    args.append(max(1, min(f.limit, MAX_LIMIT)))
    sql = (
        f"SELECT {CARD_COLUMNS} FROM cards"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {NEWEST_FIRST} LIMIT ${len(args)}"
    )
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def get_card(conn: asyncpg.Connection | asyncpg.Pool, uid: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get_card"], uid)
    return dict(row) if row else None


async def get_outcome(
    conn: asyncpg.Connection | asyncpg.Pool, command_id: UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get_outcome"], command_id)
    return dict(row) if row else None


async def get_outcomes(
    conn: asyncpg.Connection | asyncpg.Pool, command_ids: list[UUID]
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["get_outcomes"], command_ids)]
