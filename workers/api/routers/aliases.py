"""Reading aliases: where they point (now or as of a moment), their history, and the card an
alias names. Setting and removing them are commands (SetAlias, RemoveAlias) sent like any other."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from registry_core.contracts.aliases import AliasHistory, AliasList
from registry_core.contracts.http import AliasedCard, ErrorBody
from registry_core.domain.aliases import validate_alias
from registry_core.domain.cards import registry_type
from registry_core.domain.errors import AliasNotFound, InvalidQuery
from registry_core.domain.names import validate_name
from registry_core.persistence import aliases, read
from registry_core.persistence import as_of as history
from workers.api.deps import PoolDep

router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
AS_OF = Query(
    max_length=64,
    description="an event offset (e.g. 1234) or an ISO 8601 time ('2026-12-01T14:00:00Z'):"
    " answer from the registry as it was then",
)


def _name(registry: str, space: str, name: str) -> tuple[str, str, str]:
    try:
        reg = registry_type(registry).value
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    return reg, validate_name(space, field="space"), validate_name(name, field="name")


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body, default=str), media_type="application/json")


@router.get("/api/v1/aliases", response_model=AliasList, tags=["aliases"])
async def list_aliases(
    pool: PoolDep,
    registry: str,
    space: str,
    name: str,
    alias: str | None = None,
    as_of: Annotated[str | None, AS_OF] = None,
) -> Any:
    """The aliases of registry/space/name (or one of them) and the versions they point at."""
    reg, space, name = _name(registry, space, name)
    if alias is not None:
        validate_alias(alias)
    offset = await history.resolve(pool, as_of)
    rows = await aliases.list_aliases(pool, reg, space, name, alias, offset)
    return _json({"aliases": rows, "as_of_offset": offset})


@router.get("/api/v1/aliases/history", response_model=AliasHistory, tags=["aliases"])
async def alias_history(
    pool: PoolDep,
    registry: str,
    space: str,
    name: str,
    alias: str | None = None,
    limit: Annotated[int, Query(ge=1, le=read.MAX_LIMIT)] = 100,
) -> Any:
    """Every move of the aliases of registry/space/name (or of one alias), newest first: who
    set or removed which alias, pointing at which version, when."""
    reg, space, name = _name(registry, space, name)
    if alias is not None:
        validate_alias(alias)
    return _json({"moves": await aliases.alias_history(pool, reg, space, name, alias, limit)})


@router.get(
    "/api/v1/aliases/card", response_model=AliasedCard, tags=["aliases"], responses=NOT_FOUND
)
async def alias_card(
    pool: PoolDep,
    registry: str,
    space: str,
    name: str,
    alias: str,
    as_of: Annotated[str | None, AS_OF] = None,
) -> Any:
    """The card an alias points at (now, or as of a moment: "which version was `prod` last
    Tuesday at 14:00?")."""
    reg, space, name = _name(registry, space, name)
    validate_alias(alias)
    if as_of is not None:
        then, moment = await history.alias_card(pool, reg, space, name, alias, as_of)
        if then is None:
            raise AliasNotFound(f"{reg}/{space}/{name} had no alias {alias!r} at {moment}")
        return _json(then)
    found = await aliases.list_aliases(pool, reg, space, name, alias, None)
    if not found:
        raise AliasNotFound(f"{reg}/{space}/{name} has no alias {alias!r}")
    uid = found[0]["uid"]
    card = await read.get_card(pool, uid)
    if card is None:  # pragma: no cover - an alias points at a registered card
        raise AliasNotFound(f"alias {alias!r} points at {uid}, which is not in the registry")
    card["aliases"] = (await aliases.aliases_of(pool, [uid])).get(uid, [])
    return _json(card)
