"""Reading cards: search and pages, one card, its lineage, and runs' metrics side by side."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from registry_core.contracts.http import (
    AliasedCard,
    CardList,
    CardOut,
    ErrorBody,
    Lineage,
    LineageLink,
    MetricPoint,
    QueryDatetime,
    RunMetrics,
)
from registry_core.domain.cards import registry_type
from registry_core.domain.errors import CardNotFound, InvalidQuery
from registry_core.domain.names import validate_name
from registry_core.persistence import as_of as history
from registry_core.persistence import read
from registry_core.persistence.aliases import aliases_of
from registry_core.persistence.as_of import resolve as resolve_as_of
from workers.api.deps import PoolDep

router = APIRouter()
AS_OF = (
    "an event offset (e.g. 1234) or an ISO 8601 time ('2026-12-01T14:00:00Z'): answer from the"
    " registry as it was then (docs/events.md, 'The registry as of a moment')"
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body, default=str), media_type="application/json")


@router.get("/api/v1/cards", response_model=CardList, tags=["cards"])
async def list_cards(
    pool: PoolDep,
    registry: str | None = None,
    space: str | None = None,
    name: str | None = None,
    version: Annotated[
        str | None,
        Query(
            description="exact ('1.2.3'), a line ('1', '1.2', '1.*', '1.2.*'), '^1.2.0',"
            " '~1.2.0', or comparators ('>=1.2,<2')"
        ),
    ] = None,
    uid: UUID | None = None,
    tag: Annotated[list[str] | None, Query(description="key:value, repeatable (AND)")] = None,
    max_date: QueryDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=read.MAX_LIMIT)] = 100,
    sort_by_timestamp: bool = False,
    ignore_release_candidates: bool = False,
    include_deleted: bool = False,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF)] = None,
) -> Any:
    """Cards matching every given filter, newest version first (semver precedence: a
    pre-release sorts below its release), or newest first by creation time with
    `sort_by_timestamp`. Page with `cursor` = the previous page's `next_cursor`. Each card
    lists the aliases pointing at it. With `as_of`, the registry as it was then."""
    if registry is not None:
        try:
            registry = registry_type(registry).value
        except ValueError as exc:
            raise InvalidQuery(str(exc)) from None
    if space is not None:
        validate_name(space, field="space")
    if name is not None:
        validate_name(name, field="name")
    tags = {}
    for t in tag or []:
        key, sep, value = t.partition(":")
        if not sep or not key:
            raise InvalidQuery(f"tag filter {t!r} must look like key:value")
        tags[key] = value
    f = read.CardFilter(
        registry=registry,
        space=space,
        name=name,
        version=version,
        uid=uid,
        tags=tags,
        max_date=max_date,
        limit=limit,
        sort_by_timestamp=sort_by_timestamp,
        ignore_release_candidates=ignore_release_candidates,
        include_deleted=include_deleted,
        cursor=cursor,
        as_of=await resolve_as_of(pool, as_of),
    )
    rows, next_cursor = await read.list_cards(pool, f)
    # The rows come from our own projection in the documented shape: serialise them
    # directly (orjson handles UUIDs and datetimes) instead of validating each into a model
    # and back - the read path's largest cost for a 100-card page.
    return _json({"cards": rows, "next_cursor": next_cursor})


@router.get(
    "/api/v1/cards/{uid}/lineage", response_model=Lineage, tags=["cards"], responses=NOT_FOUND
)
async def card_lineage(uid: UUID, pool: PoolDep) -> Lineage:
    if await read.get_card(pool, uid) is None:
        raise CardNotFound(f"no card with uid {uid}")
    links = await read.lineage(pool, uid)
    return Lineage(
        uid=uid,
        upstream=[LineageLink(field=f, card=CardOut(**c)) for f, c in links["upstream"]],
        downstream=[LineageLink(field=f, card=CardOut(**c)) for f, c in links["downstream"]],
    )


@router.get("/api/v1/runs/metrics", response_model=RunMetrics, tags=["runs"], responses=NOT_FOUND)
async def run_metrics(
    pool: PoolDep,
    uid: Annotated[list[UUID], Query(min_length=1, max_length=100)],
    name: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> RunMetrics:
    """Metrics (by name and step) and parameters of one or more runs, side by side."""
    cards = {c["uid"]: c for c in await read.get_cards(pool, uid)}
    missing = [str(u) for u in uid if u not in cards]
    if missing:
        raise CardNotFound(f"no card with uid {', '.join(missing)}")
    not_runs = [str(u) for u, c in cards.items() if c["registry"] != "run"]
    if not_runs:
        raise InvalidQuery(f"not run cards: {', '.join(not_runs)}")
    metrics: dict[UUID, dict[str, list[MetricPoint]]] = {u: {} for u in uid}
    for m in await read.run_metrics(pool, uid, name):
        metrics[m["uid"]].setdefault(m["name"], []).append(
            MetricPoint(step=m["step"], value=m["value"], timestamp=m["logged_at"])
        )
    params = {u: dict(cards[u]["attributes"].get("parameters") or {}) for u in uid}
    return RunMetrics(metrics=metrics, parameters=params)


@router.get("/api/v1/cards/{uid}", response_model=AliasedCard, tags=["cards"], responses=NOT_FOUND)
async def get_card(
    uid: UUID,
    pool: PoolDep,
    as_of: Annotated[str | None, Query(max_length=64, description=AS_OF)] = None,
) -> Any:
    if as_of is not None:
        offset = await resolve_as_of(pool, as_of)
        assert offset is not None
        then = await history.get_card(pool, uid, offset)
        if then is None:
            raise CardNotFound(f"no card with uid {uid} at event offset {offset}")
        return _json(then)
    row = await read.get_card(pool, uid)
    if row is None:
        raise CardNotFound(f"no card with uid {uid}")
    row["aliases"] = (await aliases_of(pool, [uid])).get(uid, [])
    return _json(row)
