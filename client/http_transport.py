"""The HTTP transport (the client's adapter of `client/transport.py`): commands go to Kafka,
everything else through the registry's HTTP API.

Waiting for an outcome is one long-poll, `GET /api/v1/commands/{id}?wait=...`, woken by the
sequencer's commit (Postgres NOTIFY in the API). It is the hot request of every registration,
so it goes over the lean kept-alive connection of `client/longpoll.py`, and through httpx (with
its retries and error mapping) only when that one declines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx

from client import longpoll, transfer
from client.errors import RegistrationTimeout, RegistryUnavailable
from client.http import HttpApi, split_token
from client.publisher import KafkaPublisher
from client.transport import CardQuery
from registry_core.contracts.aliases import AliasHistory, AliasList
from registry_core.contracts.http import (
    MAX_BULK_OUTCOMES,
    AliasedCard,
    CardList,
    ClientConfig,
    CommandOutcome,
    Lineage,
    OutcomeList,
    RunMetrics,
)
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import RegistryType
from registry_core.domain.commands import AnyCommand
from registry_core.settings import ClientSettings

WAIT_SLICE_SECONDS = 25.0
BULK_CHUNK = MAX_BULK_OUTCOMES
GRANT_REFRESH_BEFORE = timedelta(minutes=5)


class HttpTransport:
    """One registry service reached over HTTP (`OPSML_TRACKING_URI`) and its Kafka."""

    def __init__(
        self, tracking_uri: str | None = None, settings: ClientSettings | None = None
    ) -> None:
        self.settings = settings or ClientSettings()
        self.where, uri_token = split_token(tracking_uri or self.settings.tracking_uri)
        token = self.settings.token.get_secret_value() if self.settings.token else uri_token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        timeout = self.settings.request_timeout_seconds
        self.api = HttpApi(self.where, headers, timeout)
        self._poller = longpoll.OutcomePoller(self.where, headers or {}, timeout)
        self._config: ClientConfig | None = None
        self.publisher = KafkaPublisher(self.settings, self.config)

    async def config(self) -> ClientConfig:
        cfg = self._config
        if cfg is None or (
            cfg.grant is not None
            and cfg.grant.expires_at - datetime.now(UTC) < GRANT_REFRESH_BEFORE
        ):
            cfg = ClientConfig.model_validate((await self.api.get("/api/v1/config")).json())
            self._config = cfg
        return cfg

    async def connect(self) -> None:
        await self.publisher.producer()

    async def publish(self, command: AnyCommand) -> None:
        await self.publisher.publish(command)

    async def publish_many(self, commands: Sequence[AnyCommand]) -> None:
        await self.publisher.publish_many(commands)

    async def wait_for(self, command_id: UUID, timeout: float) -> CommandOutcome:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RegistrationTimeout(
                    f"no outcome for command {command_id} yet; it may still be applied (is the"
                    " worker running?). Check later with GET /api/v1/commands/{command_id}"
                )
            wait = round(min(left, WAIT_SLICE_SECONDS), 3)
            path = longpoll.outcome_path(command_id, wait)
            # the lean connection for this hot request; httpx (retries, errors) for the rest
            answer = await self._poller.get(path, wait)
            body = (
                answer[1] if answer is not None else (await self.api.request("GET", path)).content
            )
            outcome = CommandOutcome.model_validate_json(body)
            if outcome.status != "pending":
                return outcome

    async def outcomes(self, command_ids: Sequence[UUID]) -> list[CommandOutcome]:
        found: list[CommandOutcome] = []
        for i in range(0, len(command_ids), BULK_CHUNK):
            resp = await self.api.request(
                "POST",
                "/api/v1/commands/outcomes",
                json={"command_ids": [str(x) for x in command_ids[i : i + BULK_CHUNK]]},
            )
            found += OutcomeList.model_validate_json(resp.content).outcomes
        return found

    async def list_page(self, query: CardQuery) -> CardList:
        resp = await self.api.get(
            "/api/v1/cards",
            registry=query.registry.value,
            space=query.space,
            name=query.name,
            version=query.version,
            uid=query.uid,
            tag=[f"{k}:{v}" for k, v in query.tags.items()] or None,
            max_date=query.max_date.isoformat() if query.max_date else None,
            limit=query.limit,
            sort_by_timestamp=query.sort_by_timestamp or None,
            ignore_release_candidates=query.ignore_release_candidates or None,
            include_deleted=query.include_deleted or None,
            cursor=query.cursor,
            as_of=query.as_of,
        )
        return CardList.model_validate_json(resp.content)

    async def get_card(self, uid: UUID, as_of: str | None = None) -> AliasedCard:
        resp = await self.api.get(f"/api/v1/cards/{uid}", as_of=as_of)
        return AliasedCard.model_validate_json(resp.content)

    async def aliases(
        self, registry: RegistryType, space: str, name: str, alias: str | None, as_of: str | None
    ) -> AliasList:
        resp = await self.api.get(
            "/api/v1/aliases", registry=registry.value, space=space, name=name, alias=alias,
            as_of=as_of,
        )  # fmt: skip
        return AliasList.model_validate_json(resp.content)

    async def alias_history(
        self, registry: RegistryType, space: str, name: str, alias: str | None, limit: int
    ) -> AliasHistory:
        resp = await self.api.get(
            "/api/v1/aliases/history", registry=registry.value, space=space, name=name,
            alias=alias, limit=limit,
        )  # fmt: skip
        return AliasHistory.model_validate_json(resp.content)

    async def alias_card(
        self, registry: RegistryType, space: str, name: str, alias: str, as_of: str | None
    ) -> AliasedCard:
        resp = await self.api.get(
            "/api/v1/aliases/card", registry=registry.value, space=space, name=name, alias=alias,
            as_of=as_of,
        )  # fmt: skip
        return AliasedCard.model_validate_json(resp.content)

    async def lineage(self, uid: UUID) -> Lineage:
        resp = await self.api.get(f"/api/v1/cards/{uid}/lineage")
        return Lineage.model_validate_json(resp.content)

    async def run_metrics(self, uids: Sequence[UUID], names: Sequence[str] | None) -> RunMetrics:
        resp = await self.api.get(
            "/api/v1/runs/metrics", uid=[str(u) for u in uids], name=list(names) if names else None
        )
        return RunMetrics.model_validate_json(resp.content)

    async def known_artifacts(
        self, registry: RegistryType, space: str, sha256: Sequence[str]
    ) -> set[str]:
        resp = await self.api.request(
            "POST",
            "/api/v1/artifacts/known",
            json={"registry": registry.value, "space": space, "sha256": list(sha256)},
        )
        return set(resp.json()["known"])

    async def stage_artifacts(
        self,
        command_id: UUID,
        files: Sequence[tuple[ArtifactRef, Path]],
        *,
        progress: bool | None = None,
    ) -> None:
        try:
            await transfer.upload(
                self.api.http,
                command_id,
                list(files),
                progress=progress,
                timeout=self.settings.transfer_timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"uploading artifacts failed: {exc}") from exc

    async def download_artifacts(
        self, uid: UUID, refs: Sequence[ArtifactRef], dest: Path, *, progress: bool | None = None
    ) -> list[Path]:
        try:
            return await transfer.download(
                self.api.http,
                uid,
                list(refs),
                dest,
                progress=progress,
                timeout=self.settings.transfer_timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"downloading artifacts failed: {exc}") from exc

    async def aclose(self) -> None:
        await self.publisher.aclose()
        await self._poller.aclose()
        await self.api.aclose()
