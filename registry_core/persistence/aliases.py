"""Persistence: the rows alias events and card changes become, their write inside the
projection's transaction, the aliases the decider's state starts from, and alias reads.

Alias moves are written in log order into `alias_history` and folded (last move of each alias in
the batch wins) into `aliases`; every update and delete of a card leaves its offset in
`card_changes`, which is what reading a card "as of" an earlier moment needs (as_of.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from registry_core.domain.cards import card_key
from registry_core.domain.events import AliasRemoved, AliasSet, CardDeleted, CardUpdated, Event
from registry_core.persistence.db import Q

AliasKey = tuple[str, str, str, str]


@dataclass
class AliasRows:
    """What one batch writes into the alias and change tables."""

    history: list[tuple[object, ...]] = field(default_factory=list)
    current: dict[AliasKey, tuple[object, ...] | None] = field(default_factory=dict)
    changes: list[tuple[object, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.history or self.changes)

    def add(self, event: Event, offset: int) -> None:
        """An applied event's rows (nothing for events that touch neither)."""
        if isinstance(event, CardUpdated | CardDeleted):
            self.changes.append((event.card.uid, offset))
        elif isinstance(event, AliasSet | AliasRemoved):
            reg = event.registry.value
            key = (reg, event.space, event.name, event.alias)
            set_ = isinstance(event, AliasSet)
            previous = event.previous_version if isinstance(event, AliasSet) else None
            self.history.append(
                (offset, *key, "set" if set_ else "removed", event.uid, event.version,
                 previous, event.actor, event.occurred_at)
            )  # fmt: skip
            self.current[key] = (
                (*key, event.uid, event.version, event.actor, event.occurred_at, offset)
                if set_
                else None
            )

    async def write(self, conn: asyncpg.Connection) -> None:
        if self.changes:
            await conn.executemany(Q["insert_card_change"], self.changes)
        if self.history:
            await conn.executemany(Q["insert_alias_history"], self.history)
            sets = [row for row in self.current.values() if row is not None]
            gone = [key for key, row in self.current.items() if row is None]
            if gone:
                await conn.executemany(Q["delete_alias"], gone)
            if sets:
                await conn.executemany(Q["upsert_alias"], sets)


async def aliases_for_keys(
    conn: asyncpg.Connection, keys: Sequence[str]
) -> dict[str, dict[str, tuple[UUID, str]]]:
    """key -> {alias: (uid, version)} for these names (names without aliases left out)."""
    if not keys:
        return {}
    parts = [k.split("/", 2) for k in keys]
    rows = await conn.fetch(
        Q["aliases_for_keys"], [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]
    )
    out: dict[str, dict[str, tuple[UUID, str]]] = {}
    for r in rows:
        out.setdefault(card_key(r["registry"], r["space"], r["name"]), {})[r["alias"]] = (
            r["uid"],
            r["version"],
        )
    return out


async def list_aliases(
    conn: Any, registry: str, space: str, name: str, alias: str | None, as_of: int | None
) -> list[dict[str, Any]]:
    """The aliases of one name (one alias, or all), now or as of an event offset."""
    if as_of is None:
        rows = await conn.fetch(Q["list_aliases"], registry, space, name, alias)
    elif alias is not None:  # the index's exact probe (the common "where was prod" question)
        row = await conn.fetchrow(Q["alias_at"], registry, space, name, alias, as_of)
        rows = [row] if row is not None and row["action"] == "set" else []
    else:
        rows = await conn.fetch(Q["list_aliases_as_of"], registry, space, name, None, as_of)
    out = []
    for r in map(dict, rows):
        r.setdefault("alias", alias)  # (alias_at's rows are of the alias asked for)
        out.append({"alias": r["alias"], **_alias(r)})
    return out


def _alias(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("uid", "version", "actor", "set_at", "event_offset")}


async def alias_history(
    conn: Any, registry: str, space: str, name: str, alias: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(Q["alias_history"], registry, space, name, alias, limit)
    return [dict(r) for r in rows]


async def aliases_of(conn: Any, uids: Sequence[UUID]) -> dict[UUID, list[str]]:
    """The aliases pointing at these cards now."""
    out: dict[UUID, list[str]] = {}
    if uids:
        for r in await conn.fetch(Q["aliases_of_uids"], list(uids)):
            out.setdefault(r["uid"], []).append(r["alias"])
    return out
