"""API tokens in Postgres (`opsml_auth.api_tokens`, migration 0004): create, list, revoke, and a
short-lived cache of lookups for the API and the worker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from registry_core.auth import Principal, Scope, hash_secret, new_token, secret_matches, split_token
from registry_core.domain.errors import Unauthenticated
from registry_core.domain.names import validate_name
from registry_core.persistence.db import Q

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    name: str
    scopes: list[str]
    spaces: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def _principal(row: Any) -> Principal:
    return Principal(
        token_id=row["token_id"],
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        spaces=frozenset(row["spaces"]),
    )


async def create_token(
    conn: Conn,
    name: str,
    scopes: frozenset[Scope],
    spaces: list[str],
    expires_in: timedelta | None = None,
) -> tuple[str, TokenInfo]:
    """Store a new token (its secret hashed) and return (the full token, shown once; its info)."""
    if not name.strip() or len(name) > 100:
        raise ValueError("a token needs a name of 1-100 characters")
    for space in spaces:
        if space != "*":
            validate_name(space, field="space")
    token_id, token = new_token()
    _, secret = split_token(token)
    row = await conn.fetchrow(
        Q["create_token"],
        token_id,
        name.strip(),
        hash_secret(secret),
        sorted(scopes),
        sorted(set(spaces)),
        expires_in,
    )
    return token, TokenInfo(**dict(row))


async def list_tokens(conn: Conn) -> list[TokenInfo]:
    rows = await conn.fetch(Q["list_tokens"])
    return [TokenInfo(**dict(r)) for r in rows]


async def revoke_token(conn: Conn, token_id: str) -> bool:
    done = await conn.execute(Q["revoke_token"], token_id)
    return done.endswith(" 1")


class TokenCache:
    """Token lookups remembered for `ttl` seconds: a request costs no query in the common case,
    and a revocation takes effect within `ttl`."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._by_id: dict[str, tuple[float, Any]] = {}

    async def _row(self, conn: Conn, token_id: str) -> Any:
        now = time.monotonic()
        hit = self._by_id.get(token_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        row = await conn.fetchrow(Q["active_token"], token_id)
        if len(self._by_id) > 10_000:
            self._by_id.clear()
        self._by_id[token_id] = (now, row)
        return row

    async def authenticate(self, conn: Conn, token: str) -> Principal:
        token_id, secret = split_token(token)
        row = await self._row(conn, token_id)
        if row is None or not secret_matches(secret, row["secret_sha256"]):
            raise Unauthenticated(f"token {token_id} is unknown, revoked or expired")
        return _principal(row)

    async def active(self, conn: Conn, token_ids: set[str]) -> set[str]:
        """Which of these token ids are neither revoked nor expired."""
        return {t for t in token_ids if await self._row(conn, t) is not None}
