"""What a route needs from the running API, as FastAPI dependencies: the settings, the database
pool, the artifact store, the outcome waiters and the caller. The lifespan puts them on
`app.state`; routes declare them instead of reaching into it, so a route's signature says what
it touches (and a test can override one with `app.dependency_overrides`)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from registry_core.auth import ALL_SPACES, Principal
from registry_core.domain.errors import Forbidden
from registry_core.settings import Settings
from registry_core.storage import ArtifactStore
from workers.api.waiters import OutcomeWaiters

# `async def`, all of them: FastAPI runs a plain `def` dependency in a worker thread.


async def settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool  # type: ignore[no-any-return]


async def store(request: Request) -> ArtifactStore:
    return request.app.state.store  # type: ignore[no-any-return]


async def waiters(request: Request) -> OutcomeWaiters:
    return request.app.state.waiters  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(pool)]
StoreDep = Annotated[ArtifactStore, Depends(store)]
WaitersDep = Annotated[OutcomeWaiters, Depends(waiters)]


def principal(request: Request) -> Principal | None:
    """The authenticated caller (set by the Guard), None with access control off."""
    return getattr(request.state, "principal", None)


def require_all_spaces(request: Request) -> None:
    """Token management: only with access control on, and only for a token on every space.
    Called first thing in the handler (not as a dependency), so an unreadable body is still
    answered 422 before this 403, as it always was."""
    if not request.app.state.auth_on:
        raise Forbidden(
            "token management needs access control on (set OPSML_GRANT_KEY); an open"
            " registry has no tokens to manage - use `opsml token` against the database"
        )
    who = request.state.principal
    if ALL_SPACES not in who.spaces:
        raise Forbidden(f"token {who.token_id} is limited to some spaces; this needs '*'")
