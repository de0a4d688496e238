"""The worker's side of access control: every command must carry a grant issued by the API and
a signature over its exact bytes (registry_core.auth), from a token that is still active, with
the scope and space the command needs. A command that fails gets a `Refused` verdict, which the
decider answers with a rejection; it changes nothing, and the worker goes on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog

from registry_core.auth import Scope, VerifiedGrant, verify_command
from registry_core.contracts.codec import UndecodableCommand
from registry_core.domain.commands import DeleteCard, RemoveAlias, SetAlias
from registry_core.domain.errors import Forbidden, RegistryError, Unauthenticated
from registry_core.domain.verdicts import Refused
from registry_core.persistence.tokens import TokenCache

log = structlog.get_logger("opsml.sequencer")


class CommandAuthorizer:
    def __init__(
        self,
        key: bytes,
        cache_seconds: float,
        protected_aliases: frozenset[str] = frozenset(),
        alias_grants: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.key = key
        self.tokens = TokenCache(cache_seconds)
        # a protected alias moves with the admin scope, or with an explicit (alias, token) grant
        self.protected = protected_aliases
        self.alias_grants = alias_grants

    async def denied(
        self, conn: asyncpg.Connection, batch: Sequence[tuple[Any, Any, UUID]]
    ) -> dict[UUID, Refused]:
        """For (record, decoded command, command_id) triples: the commands to reject, and why
        (verdicts the decider answers)."""
        now = datetime.now(UTC)
        out: dict[UUID, RegistryError] = {}
        verified: dict[UUID, tuple[Any, VerifiedGrant]] = {}
        for rec, item, cid in batch:
            if isinstance(item, UndecodableCommand):
                continue  # rejected as undecodable anyway
            try:
                verified[cid] = (
                    item,
                    verify_command(self.key, rec.headers, rec.value, item.issued_at, now),
                )
            except RegistryError as exc:
                out[cid] = exc
        if verified:
            token_ids = {g.principal.token_id for _, g in verified.values()}
            active = await self.tokens.active(conn, token_ids)
            for cid, (item, g) in verified.items():
                who = g.principal
                if who.token_id not in active:
                    out[cid] = Unauthenticated(f"token {who.token_id} is revoked or expired")
                    continue
                scope = Scope.ADMIN if isinstance(item, DeleteCard) else Scope.WRITE
                if (
                    isinstance(item, SetAlias | RemoveAlias)
                    and item.alias in self.protected
                    and (item.alias, who.token_id) not in self.alias_grants
                ):
                    scope = Scope.ADMIN
                try:
                    who.require(scope, item.space)
                except Forbidden as problem:
                    if scope is Scope.ADMIN and isinstance(item, SetAlias | RemoveAlias):
                        problem = Forbidden(
                            f"{problem.message}: alias {item.alias!r} is protected; it needs the"
                            " admin scope or a grant for this token (OPSML_ALIAS_GRANTS)"
                        )
                    out[cid] = problem
        for cid, why in out.items():
            log.warning(
                "command refused by access control", command_id=str(cid), reason=why.message
            )
        return {cid: Refused.because(why) for cid, why in out.items()}
