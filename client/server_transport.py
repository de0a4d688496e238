"""The server transport (the client's second adapter of `client/transport.py`): for processes
inside the registry's perimeter, `OPSML_TRACKING_URI` is the registry's Postgres URI.

Reads run the API's own handlers in-process on a pool of this database (the same queries, the
same validation and errors, so both modes cannot drift apart); commands go straight to Kafka
through the shared publisher; outcomes are awaited with the API's LISTEN/NOTIFY waiters; files
are staged straight into the artifact store and read back verified (client/server_files.py).
Where the broker and the store are comes from the settings row the worker writes at its start
(client/server_config.py); credentials come from this process's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from client import server_files
from client.errors import RegistrationTimeout, RegistryUnavailable
from client.publisher import KafkaPublisher
from client.server_config import build_config, load_settings
from client.server_uri import kind_of, shown
from client.transport import CardQuery
from registry_core.contracts.aliases import AliasHistory, AliasList
from registry_core.contracts.http import (
    MAX_BULK_OUTCOMES,
    AliasedCard,
    CardList,
    ClientConfig,
    CommandOutcome,
    KnownArtifactsQuery,
    Lineage,
    OutcomeList,
    RunMetrics,
    storable_datetime,
)
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import RegistryType
from registry_core.domain.commands import AnyCommand
from registry_core.domain.errors import Forbidden, InvalidQuery, summarize_validation
from registry_core.persistence import db, read
from registry_core.persistence.server_settings import ServerSettings
from registry_core.settings import ClientSettings, Settings
from registry_core.storage import ArtifactStore, open_store

if TYPE_CHECKING:  # (imported on first use: the API's modules load FastAPI)
    from workers.api.waiters import OutcomeWaiters

GRANT_REFRESH_BEFORE = timedelta(minutes=5)
MAX_CURSOR = 1000  # the read API's bounds on its parameters (workers/api/routers/cards.py)
MAX_RUNS = 100
# What a lost or restarting database looks like to asyncpg (the API answers these 503).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unknown host (DatabaseUnreachable is one)
    TimeoutError,
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown role, refused by pg_hba
    asyncpg.InvalidPasswordError,
)


@contextlib.contextmanager
def database_errors(where: str) -> Iterator[None]:
    """The database's failures as RegistryUnavailable (the domain's errors pass through)."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise RegistryUnavailable(
            f"cannot use the registry's database at {where} ({type(exc).__name__}: {exc});"
            " is OPSML_TRACKING_URI right and the database up?"
        ) from exc


def _expire(woken: asyncio.Future[Any]) -> None:
    if not woken.done():
        woken.set_result(None)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset query on every release (a round trip per read, as in the API's pool): these
    connections only run reads, with no session state to undo."""


class ServerTransport:
    """One registry reached through its database (`OPSML_TRACKING_URI=postgresql://...`)."""

    def __init__(
        self, tracking_uri: str | None = None, settings: ClientSettings | None = None
    ) -> None:
        self.settings = settings or ClientSettings()
        dsn = (tracking_uri or self.settings.tracking_uri).strip()
        kind_of(dsn)  # a clear error for another scheme
        scheme, sep, rest = dsn.partition("://")
        self.dsn = scheme.lower() + sep + rest  # (asyncpg takes the scheme in lower case only)
        self.where = shown(self.dsn)  # never the password
        self._server = Settings()  # this process's secrets: grant key, broker credentials
        self._lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._row: ServerSettings | None = None
        self._store: ArtifactStore | None = None
        self._waiters: OutcomeWaiters | None = None  # started on the first wait
        self._config: ClientConfig | None = None
        self.publisher = KafkaPublisher(self.settings, self.config)

    # ---- what it opens, on first use ---------------------------------------------------------

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    with database_errors(self.where):
                        pool = await db.create_pool(
                            self.dsn, min_size=1, max_size=4, reset=_keep_session
                        )
                        try:
                            self._row = await load_settings(pool, self.where)
                        except BaseException:
                            await pool.close()
                            raise
                    self._pool = pool
        return self._pool

    async def row(self) -> ServerSettings:
        await self.pool()
        assert self._row is not None
        return self._row

    async def store(self) -> ArtifactStore:
        if self._store is None:
            row = await self.row()
            self._store = open_store(
                row.storage_uri, s3_endpoint_url=row.s3_endpoint_url, s3_region=row.s3_region
            )
        return self._store

    async def waiters(self) -> OutcomeWaiters:
        if self._waiters is None:
            from workers.api.waiters import OutcomeWaiters

            await self.pool()
            waiters = OutcomeWaiters(self.dsn)
            with database_errors(self.where):
                await waiters.start()
            if self._waiters is None:
                self._waiters = waiters
            else:  # another wait started one meanwhile
                await waiters.stop()
        return self._waiters

    # ---- the port ------------------------------------------------------------------------------

    async def config(self) -> ClientConfig:
        cfg = self._config
        if cfg is None or (
            cfg.grant is not None
            and cfg.grant.expires_at - datetime.now(UTC) < GRANT_REFRESH_BEFORE
        ):
            pool = await self.pool()
            with database_errors(self.where):
                cfg = await build_config(pool, await self.row(), self.settings, self._server)
            self._config = cfg
        return cfg

    async def connect(self) -> None:
        await self.publisher.producer()
        await self.waiters()

    async def _signable(self) -> None:
        cfg = await self.config()
        if cfg.auth and cfg.grant is None:
            raise Forbidden(
                "this registry's worker requires signed commands: a server registry signs them"
                " with the registry's OPSML_GRANT_KEY and a token with the write scope in"
                " OPSML_TOKEN (`opsml token create --scopes write`); set both in this process"
                + ("" if self._server.grant_key else " (OPSML_GRANT_KEY is not set)")
                + ("" if self.settings.token else " (OPSML_TOKEN is not set)")
            )

    async def publish(self, command: AnyCommand) -> None:
        await self._signable()
        await self.publisher.publish(command)

    async def publish_many(self, commands: Sequence[AnyCommand]) -> None:
        await self._signable()
        await self.publisher.publish_many(commands)

    async def wait_for(self, command_id: UUID, timeout: float) -> CommandOutcome:
        """As the API's long-poll: the wait is registered before the outcome is read, so a
        commit in between cannot be missed; a lost listener wakes it to read again."""
        from workers.api.outcomes import outcome_json

        deadline = time.monotonic() + timeout
        pool, waiters = await self.pool(), await self.waiters()
        while True:
            with database_errors(self.where), waiters.expect(str(command_id)) as woken:
                row = await read.get_outcome_with_card(pool, command_id)
                left = deadline - time.monotonic()
                if row is None and left > 0:
                    timer = asyncio.get_running_loop().call_later(left, _expire, woken)
                    try:
                        row = await woken
                    finally:
                        timer.cancel()
                    if row is None:
                        row = await read.get_outcome_with_card(pool, command_id)
            if row is not None:
                return CommandOutcome.model_validate_json(outcome_json(row))
            if time.monotonic() >= deadline:
                raise RegistrationTimeout(
                    f"no outcome for command {command_id} yet; it may still be applied (is the"
                    " worker running?). Check later with wait_for(command_id)"
                )

    async def outcomes(self, command_ids: Sequence[UUID]) -> list[CommandOutcome]:
        from workers.api.outcomes import outcomes_json

        pool = await self.pool()
        found: list[CommandOutcome] = []
        for i in range(0, len(command_ids), MAX_BULK_OUTCOMES):
            with database_errors(self.where):
                rows = await read.get_outcomes(pool, list(command_ids[i : i + MAX_BULK_OUTCOMES]))
            found += OutcomeList.model_validate_json(outcomes_json(rows)).outcomes
        return found

    # Reads: the API's handlers (workers/api/routers), called with this pool.

    async def list_page(self, query: CardQuery) -> CardList:
        from workers.api.routers import cards

        # what FastAPI checks of the parameters before the handler runs
        if not 1 <= query.limit <= read.MAX_LIMIT:
            raise InvalidQuery(f"limit must be 1-{read.MAX_LIMIT}, not {query.limit}")
        if query.cursor is not None and len(query.cursor) > MAX_CURSOR:
            raise InvalidQuery(f"the cursor is longer than {MAX_CURSOR} characters")
        if query.max_date is not None:
            try:
                storable_datetime(query.max_date)
            except ValueError as exc:
                raise InvalidQuery(f"max_date: {exc}") from None
        pool = await self.pool()
        with database_errors(self.where):
            resp = await cards.list_cards(
                pool,
                registry=query.registry.value,
                space=query.space,
                name=query.name,
                version=query.version,
                uid=query.uid,
                tag=[f"{k}:{v}" for k, v in query.tags.items()] or None,
                max_date=query.max_date,
                limit=query.limit,
                sort_by_timestamp=query.sort_by_timestamp,
                ignore_release_candidates=query.ignore_release_candidates,
                include_deleted=query.include_deleted,
                cursor=query.cursor,
                as_of=query.as_of,
            )
        return CardList.model_validate_json(resp.body)

    async def get_card(self, uid: UUID, as_of: str | None = None) -> AliasedCard:
        from workers.api.routers import cards

        pool = await self.pool()
        with database_errors(self.where):
            resp = await cards.get_card(uid, pool, as_of)
        return AliasedCard.model_validate_json(resp.body)

    async def aliases(
        self, registry: RegistryType, space: str, name: str, alias: str | None, as_of: str | None
    ) -> AliasList:
        from workers.api.routers import aliases

        pool = await self.pool()
        with database_errors(self.where):
            resp = await aliases.list_aliases(pool, registry.value, space, name, alias, as_of)
        return AliasList.model_validate_json(resp.body)

    async def alias_history(
        self, registry: RegistryType, space: str, name: str, alias: str | None, limit: int
    ) -> AliasHistory:
        from workers.api.routers import aliases

        pool = await self.pool()
        with database_errors(self.where):
            resp = await aliases.alias_history(pool, registry.value, space, name, alias, limit)
        return AliasHistory.model_validate_json(resp.body)

    async def alias_card(
        self, registry: RegistryType, space: str, name: str, alias: str, as_of: str | None
    ) -> AliasedCard:
        from workers.api.routers import aliases

        pool = await self.pool()
        with database_errors(self.where):
            resp = await aliases.alias_card(pool, registry.value, space, name, alias, as_of)
        return AliasedCard.model_validate_json(resp.body)

    async def lineage(self, uid: UUID) -> Lineage:
        from workers.api.routers import cards

        pool = await self.pool()
        with database_errors(self.where):
            return await cards.card_lineage(uid, pool)

    async def run_metrics(self, uids: Sequence[UUID], names: Sequence[str] | None) -> RunMetrics:
        from workers.api.routers import cards

        if not 1 <= len(uids) <= MAX_RUNS or len(names or ()) > MAX_RUNS:
            raise InvalidQuery(f"compare 1-{MAX_RUNS} runs and up to {MAX_RUNS} metric names")
        pool = await self.pool()
        with database_errors(self.where):
            return await cards.run_metrics(pool, list(uids), list(names) if names else None)

    async def known_artifacts(
        self, registry: RegistryType, space: str, sha256: Sequence[str]
    ) -> set[str]:
        from workers.api.routers import artifacts

        pool = await self.pool()
        try:
            q = KnownArtifactsQuery(registry=registry.value, space=space, sha256=list(sha256))
        except ValidationError as exc:
            raise InvalidQuery(summarize_validation(exc)) from None
        with database_errors(self.where):
            return set((await artifacts.known_artifacts(q, pool)).known)

    async def stage_artifacts(
        self,
        command_id: UUID,
        files: Sequence[tuple[ArtifactRef, Path]],
        *,
        progress: bool | None = None,
    ) -> None:
        row = await self.row()
        await server_files.stage(
            await self.store(), command_id, list(files), row.max_artifact_bytes, progress
        )

    async def download_artifacts(
        self, uid: UUID, refs: Sequence[ArtifactRef], dest: Path, *, progress: bool | None = None
    ) -> list[Path]:
        pool = await self.pool()
        with database_errors(self.where):
            card = await read.get_card(pool, uid)
        store = await self.store()
        return await server_files.download(store, uid, card, list(refs), dest, progress)

    async def aclose(self) -> None:
        await self.publisher.aclose()
        if self._waiters is not None:
            await self._waiters.stop()
            self._waiters = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
