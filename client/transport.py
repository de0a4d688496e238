"""The client's transport port: what a card registry needs from the registry service.

`AsyncCardRegistry` builds and checks commands and turns answers into cards; how commands reach
the sequencer and how outcomes, cards and files come back is a transport's job. Two adapters:
`client/http_transport.py` (an http(s) tracking URI: commands to Kafka, everything else through
the HTTP API) and `client/server_transport.py` (a postgresql:// tracking URI, the server
registry: reads from Postgres, commands to Kafka, files straight to the artifact store).
`tests/integration/test_transport_contract.py` holds the cases every adapter must pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol
from uuid import UUID

from registry_core.contracts.aliases import AliasHistory, AliasList
from registry_core.contracts.http import (
    AliasedCard,
    CardList,
    ClientConfig,
    CommandOutcome,
    Lineage,
    RunMetrics,
)
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import RegistryType
from registry_core.domain.commands import AnyCommand


@dataclass(frozen=True)
class CardQuery:
    """One page of a card search; every filter given must match (the read API's filters)."""

    registry: RegistryType
    space: str | None = None
    name: str | None = None
    version: str | None = None  # exact, or a constraint ('1.*', '^1.2.0', '>=1.2,<2')
    uid: UUID | None = None
    tags: dict[str, str] = field(default_factory=dict)
    max_date: datetime | None = None
    limit: int = 100
    sort_by_timestamp: bool = False
    ignore_release_candidates: bool = False
    include_deleted: bool = False
    cursor: str | None = None
    as_of: str | None = None  # an event offset or an ISO time: the registry as it was then


class Transport(Protocol):
    """The registry service as one client sees it. Every method raises the domain's errors
    (CardNotFound, InvalidQuery, ...) or RegistryUnavailable, never a library's own."""

    where: str  # the service's address, for messages (never holds a credential)

    async def config(self) -> ClientConfig:
        """The service's settings for clients (topics, limits, the signing grant)."""
        ...

    async def connect(self) -> None:
        """Open what publishing needs ahead of the first command (else the first pays it)."""
        ...

    async def publish(self, command: AnyCommand) -> None:
        """Send one command (checked, encoded, signed); its outcome comes from `wait_for`.
        Re-sending the same command is safe: the sequencer de-duplicates by command_id."""
        ...

    async def publish_many(self, commands: Sequence[AnyCommand]) -> None:
        """Send commands in order without waiting on each (the bulk path)."""
        ...

    async def wait_for(self, command_id: UUID, timeout: float) -> CommandOutcome:
        """The decided outcome of a command (RegistrationTimeout after `timeout` seconds). A
        wait started before the command is published cannot miss its outcome."""
        ...

    async def outcomes(self, command_ids: Sequence[UUID]) -> list[CommandOutcome]:
        """The outcomes decided so far for these commands (any order, unknown ones left out)."""
        ...

    async def list_page(self, query: CardQuery) -> CardList:
        """One page of records (with `next_cursor` when there is more)."""
        ...

    async def get_card(self, uid: UUID, as_of: str | None = None) -> AliasedCard:
        """One record by uid, deleted or not (CardNotFound); as it was at `as_of` if given."""
        ...

    async def aliases(
        self, registry: RegistryType, space: str, name: str, alias: str | None, as_of: str | None
    ) -> AliasList:
        """The aliases of a name (or one of them), now or as of a moment."""
        ...

    async def alias_history(
        self, registry: RegistryType, space: str, name: str, alias: str | None, limit: int
    ) -> AliasHistory:
        """Every move of a name's aliases (or of one alias), newest first."""
        ...

    async def alias_card(
        self, registry: RegistryType, space: str, name: str, alias: str, as_of: str | None
    ) -> AliasedCard:
        """The record an alias points at, now or as of a moment (AliasNotFound)."""
        ...

    async def lineage(self, uid: UUID) -> Lineage:
        """Records the card points at and records pointing at it (CardNotFound)."""
        ...

    async def run_metrics(self, uids: Sequence[UUID], names: Sequence[str] | None) -> RunMetrics:
        """Metrics and parameters of runs side by side (CardNotFound for an unknown run)."""
        ...

    async def known_artifacts(
        self, registry: RegistryType, space: str, sha256: Sequence[str]
    ) -> set[str]:
        """Which of these contents the space already stores (they need no upload)."""
        ...

    async def stage_artifacts(
        self,
        command_id: UUID,
        files: Sequence[tuple[ArtifactRef, Path]],
        *,
        progress: bool | None = None,
    ) -> None:
        """Upload files into the command's staging area, before the command is published."""
        ...

    async def download_artifacts(
        self, uid: UUID, refs: Sequence[ArtifactRef], dest: Path, *, progress: bool | None = None
    ) -> list[Path]:
        """Write a card's files into `dest`, each verified against its sha256
        (ArtifactIntegrityError, leaving no partial file)."""
        ...

    async def aclose(self) -> None: ...
