"""Command outcomes: one command's (optionally waiting for it) and many at once.

The client's exact long-poll never reaches this router: workers/api/fast_outcome.py answers it
with the same `answer_outcome`. Every other form (another spelling of the id, other parameters,
errors to document) is answered here."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from registry_core.contracts.http import CommandOutcome, OutcomeList, OutcomesQuery
from registry_core.persistence import read
from workers.api.deps import PoolDep, SettingsDep, WaitersDep
from workers.api.outcomes import JSON, answer_outcome, outcomes_json

router = APIRouter(tags=["commands"])


@router.get(
    "/api/v1/commands/{command_id}",
    response_model=CommandOutcome,
    responses={202: {"model": CommandOutcome, "description": "not decided yet"}},
)
async def command_outcome(
    command_id: UUID,
    pool: PoolDep,
    waiters: WaitersDep,
    s: SettingsDep,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the outcome")] = 0,
) -> Any:
    """The outcome of a published command. With `wait`, the request is held until the
    sequencer commits the outcome (woken by LISTEN/NOTIFY) or the wait runs out (202)."""
    status, body = await answer_outcome(pool, waiters, command_id, wait, s.command_wait_max_seconds)
    return Response(body, status_code=status, media_type=JSON)


@router.post("/api/v1/commands/outcomes", response_model=OutcomeList)
async def command_outcomes(query: OutcomesQuery, pool: PoolDep) -> Any:
    """Outcomes of many commands at once (no waiting, no card bodies): the bulk client waits
    for its last command, then collects the rest here in one round trip."""
    rows = await read.get_outcomes(pool, query.command_ids)
    return Response(outcomes_json(rows), media_type=JSON)
