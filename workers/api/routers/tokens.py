"""API tokens: create, list and revoke (admin scope on every space; the Guard checks the scope,
`require_all_spaces` the spaces)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from registry_core.auth import parse_scopes
from registry_core.contracts.http import ErrorBody, NewToken, TokenList, TokenOut, TokenRequest
from registry_core.domain.errors import CardNotFound, InvalidQuery, clip
from registry_core.persistence.tokens import create_token, list_tokens, revoke_token
from workers.api.deps import PoolDep, require_all_spaces

log = structlog.get_logger("opsml.api")
router = APIRouter(tags=["tokens"])


@router.post("/api/v1/tokens", response_model=NewToken, status_code=201)
async def new_token(request: Request, body: TokenRequest, pool: PoolDep) -> NewToken:
    """Create an API token (admin scope on every space). The token is shown once."""
    require_all_spaces(request)
    try:
        scopes = parse_scopes(body.scopes)
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    try:
        token, info = await create_token(pool, body.name, scopes, body.spaces, expires)
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from None
    log.info("token created", token_id=info.token_id, name=info.name, scopes=info.scopes)
    return NewToken(token=token, info=TokenOut(**asdict(info)))


@router.get("/api/v1/tokens", response_model=TokenList)
async def tokens_list(request: Request, pool: PoolDep) -> TokenList:
    """Every token's id, name, scopes, spaces and dates (never a secret or a hash)."""
    require_all_spaces(request)
    infos = await list_tokens(pool)
    return TokenList(tokens=[TokenOut(**asdict(i)) for i in infos])


@router.delete("/api/v1/tokens/{token_id}", status_code=204, responses={404: {"model": ErrorBody}})
async def token_revoke(request: Request, token_id: str, pool: PoolDep) -> Response:
    """Revoke a token: the API refuses it and the worker rejects commands signed under it
    within OPSML_TOKEN_CACHE_SECONDS."""
    require_all_spaces(request)
    if not await revoke_token(pool, token_id):
        raise CardNotFound(f"no active token {clip(token_id, 40)}")
    log.info("token revoked", token_id=token_id)
    return Response(status_code=204)
