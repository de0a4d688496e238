"""What the UI's pages read: the overview's counts (cached for a second), a registry's names
searched by name, tags and version constraint, a name's versions, a card with its lineage and
metrics, and the event feed. Cards and lineage come from the API's own read functions
(registry_core/persistence/read.py); the UI's extra queries are named ones in queries/ui.sql or,
for the search, composed from fixed fragments with $n parameters like `read.list_cards`."""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from registry_core.domain.errors import InvalidQuery
from registry_core.persistence.db import Q
from registry_core.persistence.read import Conn, version_where

NAMES_PAGE = 50
MAX_SEARCH_ROUNDS = 20  # rounds of a page of names each, when other filters drop most
EVENTS_PAGE = 50
COUNTS_MAX_AGE = 30.0  # seconds
NOT_IN_NAMES = re.compile(r"[^a-z0-9-]")
PRECEDENCE = "major DESC, minor DESC, patch DESC, pre_key DESC, event_offset DESC"


@dataclass
class NameSearch:
    registry: str
    space: str | None = None
    q: str = ""  # part of the name
    tags: dict[str, str] = field(default_factory=dict)
    version: str = ""  # a constraint: '1.2.3', '1.*', '^1.2', '>=1,<2'
    include_deleted: bool = False
    cursor: str | None = None
    limit: int = NAMES_PAGE


def _cursor(space: str, name: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([space, name])).decode()


def _uncursor(cursor: str) -> tuple[str, str]:
    try:
        space, name = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not (isinstance(space, str) and isinstance(name, str)) or "\x00" in space + name:
            raise ValueError
        return space, name
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidQuery(
            "this page link is not valid any more: start from the first page"
        ) from None


async def search_names(conn: Conn, s: NameSearch) -> tuple[list[dict[str, Any]], str | None]:
    """One page of names (by space, then name) with at least one version matching every
    filter, each with its newest matching version; and the cursor of the next page.

    DISTINCT ON in the order of the `cards_precedence` index: the scan walks the index and
    stops after a page of names, so a page costs the same on a registry of any size. A search
    by part of the name first finds the matching names in an index-only scan (names only: no
    card row read), then their newest matching versions; a walk of the whole index reading
    every card to test its name took 5x longer at 100k cards (docs/ui.md)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where.append(f"registry = {arg(s.registry)}")
    if s.space:
        where.append(f"space = {arg(s.space)}")
    if not s.include_deleted:
        where.append(f"status = {arg('active')}")
    if s.tags:
        where.append(f"tags @> {arg(s.tags)}::jsonb")
    if s.version:
        clauses = version_where(s.version, arg)  # InvalidQuery with the accepted forms
        if clauses is None:
            return [], None
        where.extend(clauses)
    after = _uncursor(s.cursor) if s.cursor else None
    limit = max(1, min(s.limit, 200))
    select = (
        "SELECT DISTINCT ON (space, name) uid, space, name, version, status, created_at, tags,"
        " card_type, description FROM cards WHERE "
    )
    order = f" ORDER BY space, name, {PRECEDENCE} LIMIT {limit + 1}"
    q = NOT_IN_NAMES.sub("", s.q.lower())  # a name's own alphabet: no LIKE wildcards left
    if not q:
        if after:
            where.append(f"(space, name) > ({arg(after[0])}, {arg(after[1])})")
        rows = [dict(r) for r in await conn.fetch(select + " AND ".join(where) + order, *args)]
    else:
        rows = []
        for _ in range(MAX_SEARCH_ROUNDS):  # until a page is full or the names run out
            keys = await conn.fetch(*_names_like(s.registry, s.space, q, after, limit + 1))
            if not keys:
                break
            n = len(args)
            among = (
                f" AND (space, name) IN (SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[]))"
            )
            found = await conn.fetch(
                select + " AND ".join(where) + among + order,
                *args, [k["space"] for k in keys], [k["name"] for k in keys],
            )  # fmt: skip
            rows += [dict(r) for r in found]
            if len(rows) > limit or len(keys) <= limit:
                break
            after = (keys[-1]["space"], keys[-1]["name"])
    more = len(rows) > limit
    page = rows[:limit]
    if page:
        counts = await conn.fetch(
            Q["ui_name_counts"], s.registry, [r["space"] for r in page], [r["name"] for r in page]
        )
        by_name = {(c["space"], c["name"]): c for c in counts}
        for r in page:
            c = by_name.get((r["space"], r["name"]))
            r["versions"] = c["versions"] if c else 0
            r["deleted"] = c["deleted"] if c else 0
            # shaped here, not in the template: Jinja's calls are most of a 50-row page
            r["pre"] = is_prerelease(r["version"])
            r["tags"] = r["tags"] if isinstance(r["tags"], dict) else {}  # an odd card's
            r["iso"] = r["created_at"].isoformat()
            r["when"] = r["created_at"].strftime("%Y-%m-%d %H:%M")
    return page, (_cursor(page[-1]["space"], page[-1]["name"]) if more else None)


def _names_like(
    registry: str, space: str | None, q: str, after: tuple[str, str] | None, limit: int
) -> list[Any]:
    """The names containing `q`, after `after`, in the order of the `cards_version_unique`
    index (registry, space, name, version) and read from it alone (an index-only scan)."""
    args: list[Any] = [registry, f"%{q}%"]
    where = ["registry = $1", "name LIKE $2"]
    if space:
        args.append(space)
        where.append(f"space = ${len(args)}")
    if after:
        args += list(after)
        where.append(f"(space, name) > (${len(args) - 1}, ${len(args)})")
    sql = (
        "SELECT space, name FROM cards WHERE " + " AND ".join(where)
        + f" GROUP BY space, name ORDER BY space, name LIMIT {int(limit)}"
    )  # fmt: skip
    return [sql, *args]


class CountsCache:
    """The overview's per-space counts (a full scan: ~30 ms at 100k cards), kept until a card
    changes. The live hub calls `changed` on every notification: with pages open it reads the
    counts again at once, before the pages are told (so a page re-read shows them); with none,
    it only marks them stale for the next overview. COUNTS_MAX_AGE bounds what a change made
    outside the sequencer (a replay switch) can leave stale."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.read_at = -1e9
        self.stale = True

    async def get(self, conn: Conn) -> list[dict[str, Any]]:
        if self.stale or time.monotonic() - self.read_at > COUNTS_MAX_AGE:
            await self.refresh(conn)
        return self.rows

    async def refresh(self, conn: Conn) -> None:
        self.stale = False  # (a change during the read marks it stale again)
        self.read_at = time.monotonic()
        try:
            self.rows = [dict(r) for r in await conn.fetch(Q["ui_space_counts"])]
        except BaseException:
            self.stale = True
            raise

    async def changed(self, conn: Conn, watched: bool) -> None:
        if watched:
            await self.refresh(conn)
        else:
            self.stale = True


def summarise(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per registry: its spaces and totals, from the per-space counts."""
    out: dict[str, dict[str, Any]] = {}
    for r in counts:
        reg = out.setdefault(r["registry"], {"registry": r["registry"], "cards": 0, "names": 0,
                                             "deleted": 0, "spaces": []})  # fmt: skip
        reg["cards"] += r["cards"]
        reg["names"] += r["names"]
        reg["deleted"] += r["deleted"]
        reg["spaces"].append(r)
    return list(out.values())


async def recent_events(
    conn: Conn, before: int | None, limit: int = EVENTS_PAGE, types: list[str] | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["ui_recent_events"], before, limit, types)]


async def briefs(conn: Conn, command_ids: list[UUID]) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(Q["ui_card_brief"], command_ids)]


def is_prerelease(version: str) -> bool:
    return "-" in version.partition("+")[0]
