"""What data scientists import: AsyncCardRegistry (its sync twin CardRegistry is client/sync.py).

A registry of one type turns cards into checked commands (`client/commands.py`), hands them to
its transport (`client/transport.py`; HTTP and Kafka by default), waits for the sequencer's
outcome and turns records back into cards (`client/cards.py`). Registration publishes a
RegisterCard command, then waits for the outcome; when `register_card` returns, the card is
projected: a following `list_cards` sees it (read-your-writes).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from client import commands, transfer
from client.aliases import AliasMethods, AsOf, as_of_text
from client.cards import Card as ClientCard
from client.cards import Origin, from_record, pending_files, registered, uploaded
from client.errors import AlreadyRegistered, RegistrationTimeout, RegistryUnavailable
from client.http import split_token as _split_token
from client.http_transport import HttpTransport
from client.publisher import kafka_security as _kafka_security
from client.server_uri import kind_of
from client.transport import CardQuery, Transport
from registry_core.contracts.http import (
    AliasedCard,
    CardList,
    CardOut,
    ClientConfig,
    CommandOutcome,
    Lineage,
    RunMetrics,
)
from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY as DOMAIN_CLASSES
from registry_core.domain.cards import Card, Metric, RegistryType
from registry_core.domain.commands import AnyCommand, RegisterCard
from registry_core.domain.errors import (
    CardNotFound,
    InvalidCommand,
    RegistryError,
    WrongRegistry,
    error_from_code,
)
from registry_core.domain.versioning import VersionType
from registry_core.settings import ClientSettings

CardT = TypeVar("CardT", bound=Card)


class AsyncCardRegistry(AliasMethods):
    """A typed registry (`"run"`, `"data"`, `"model"`, ...) for one event loop."""

    def __init__(
        self,
        registry_type: str | RegistryType,
        *,
        tracking_uri: str | None = None,
        settings: ClientSettings | None = None,
        transport: Transport | None = None,
    ) -> None:
        """`transport`: another way to reach the registry service (default: from `tracking_uri`
        or OPSML_TRACKING_URI - its HTTP API and Kafka for an http(s) URI, its database, Kafka
        and artifact store for a postgresql:// one). A transport passed in stays open when
        the registry closes: its owner closes it."""
        self.registry_type = commands.resolve_registry(registry_type)
        # the domain's class: the client's cards subclass it, and a plain domain card (no files)
        # registers as well
        self.card_class = DOMAIN_CLASSES[self.registry_type]
        self.settings = settings or ClientSettings()
        self._owns_transport = transport is None
        self.transport: Transport = transport or _open_transport(tracking_uri, self.settings)
        self.tracking_uri = self.transport.where
        self._active = Origin(self, "active")  # what a card registered here is bound to

    async def __aenter__(self) -> AsyncCardRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_transport:
            await self.transport.aclose()

    async def config(self) -> ClientConfig:
        """The registry's settings for clients (topics, limits, the signing grant)."""
        return await self.transport.config()

    async def connect(self) -> None:
        """Connect for publishing now (the first registration pays it otherwise)."""
        await self.transport.connect()

    _get_producer = connect  # the benchmark's warm-up (bench/drivers/ours_driver.py)

    # ---- commands ---------------------------------------------------------------------------

    def _command_for(
        self,
        card: Card,
        version_type: str | VersionType,
        version: str | None,
        pre_tag: str = commands.DEFAULT_PRE_TAG,
        build_tag: str = commands.DEFAULT_BUILD_TAG,
        artifacts: list[Any] | None = None,
    ) -> RegisterCard:
        return commands.registration(
            card, self.registry_type, self.card_class, version_type, version, pre_tag, build_tag,
            artifacts,
        )  # fmt: skip

    async def publish(self, command: AnyCommand) -> None:
        """Publish a command without waiting for its outcome (see `wait_for`)."""
        await self.transport.publish(command)

    async def wait_for(
        self, command_id: UUID | str, timeout: float | None = None
    ) -> CommandOutcome:
        """Block until the sequencer has decided (and projected) the command."""
        return await self.transport.wait_for(
            commands.uid_of(command_id, "command_id"),
            timeout or self.settings.register_timeout_seconds,
        )

    async def _execute(self, command: AnyCommand) -> CommandOutcome:
        # Start waiting before publishing: the wait is registered first, so the outcome cannot
        # be missed, and the wait's round trip overlaps the Kafka produce.
        waiter = asyncio.create_task(
            self.transport.wait_for(command.command_id, self.settings.register_timeout_seconds)
        )
        try:
            await self.transport.publish(command)
        except BaseException:
            waiter.cancel()
            raise
        outcome = await waiter
        if outcome.status == "rejected":
            raise error_from_code(outcome.error_code, outcome.reason or "command rejected")
        return outcome

    async def register_card(
        self,
        card: CardT,
        version_type: str | VersionType = VersionType.MINOR,
        version: str | None = None,
        *,
        pre_tag: str = "rc",
        build_tag: str = "build",
        progress: bool | None = None,
    ) -> CardT:
        """Register `card`; on return `card.version` and `card.uid` are set and the card is
        visible to every query. Its data/model objects and attached files are uploaded first
        (with a progress bar for large transfers on a terminal).

        version_type: major | minor (default) | patch | pre | build | pre_build. `version` (or
        the version written on the card: both, if given, must agree) may be a full version
        (taken as given if free), or a line ("2", "2.1") to bump within."""
        with transfer.prepared(card) as (files, learnt):
            for key, value in learnt.items():
                setattr(card, key, value)
            command = self._command_for(
                card, version_type, version, pre_tag, build_tag, [ref for ref, _ in files]
            )
            if files:
                await self._upload(command, files, progress)
            outcome = await self._execute(command)
            if files:
                uploaded(card)
        record = outcome.card
        assert record is not None
        registered(card, record.version, record.uid, record.created_at, self._active)
        card.artifacts = list(record.artifacts)
        return card

    async def _upload(
        self, command: RegisterCard, files: list[tuple[Any, Path]], progress: bool | None
    ) -> None:
        """Upload into the command's staging area every file the registry does not already
        hold in this space (identical content is never uploaded twice)."""
        known = await self.transport.known_artifacts(
            command.registry, command.space, [ref.sha256 for ref, _ in files]
        )
        todo = [(ref, path) for ref, path in files if ref.sha256 not in known]
        await self.transport.stage_artifacts(command.command_id, todo, progress=progress)

    async def update_card(self, card: Card) -> ClientCard:
        """Store the card's current tags, description, metadata and type-specific fields
        (same version, same uid). Returns the card as the registry now has it."""
        command = commands.update(card, self.registry_type, self.card_class)
        return self._card((await self._execute(command)).card)

    async def log_metrics(self, card: Card, metrics: list[Metric]) -> ClientCard:
        """Append metrics to a registered run (no new version)."""
        command = commands.add_metrics(card, self.registry_type, self.card_class, metrics)
        return self._card((await self._execute(command)).card)

    async def delete_card(self, card: Card) -> None:
        """Delete a card. Its version number stays taken and the event log keeps a tombstone;
        pipeline and project cards cannot be deleted."""
        await self._execute(commands.delete(card, self.registry_type, self.card_class))

    async def register_cards(
        self,
        cards: Sequence[Card],
        version_type: str | VersionType = VersionType.MINOR,
    ) -> list[CommandOutcome]:
        """Register many cards fast: publish every command without waiting on each, then wait
        once. Returns one outcome per card, in order; registered cards get version/uid set,
        rejected ones are left untouched (their outcome says why) - nothing is raised for them.

        The commands partition is sequenced in order, so once the last command has an outcome
        every earlier one has too; the rest are fetched in bulk.
        """
        for card in cards:
            if (
                pending_files(card)
                or getattr(card, "data", None) is not None
                or getattr(card, "model", None) is not None
            ):
                raise InvalidCommand(
                    "register_cards is the metadata-only fast path; register cards that carry"
                    " data, models or files with register_card"
                )
        built = [self._command_for(card, version_type, None) for card in cards]
        if not built:
            return []
        await self.transport.publish_many(built)
        await self.wait_for(built[-1].command_id)
        ids = [c.command_id for c in built]
        found = {o.command_id: o for o in await self.transport.outcomes(ids)}
        outcomes = []
        for card, cmd in zip(cards, built, strict=True):
            out = found.get(cmd.command_id) or await self.wait_for(cmd.command_id)
            if out.status == "registered":
                assert out.version is not None
                registered(card, out.version, out.uid, out.decided_at, self._active)
            outcomes.append(out)
        return outcomes

    # ---- queries ----------------------------------------------------------------------------

    def _card(self, record: CardOut | None) -> ClientCard:
        assert record is not None
        return from_record(record, self)

    async def list_page(
        self,
        *,
        space: str | None = None,
        name: str | None = None,
        version: str | None = None,
        uid: UUID | str | None = None,
        tags: dict[str, str] | None = None,
        max_date: datetime | None = None,
        limit: int = 100,
        sort_by_timestamp: bool = False,
        ignore_release_candidates: bool = False,
        include_deleted: bool = False,
        cursor: str | None = None,
        as_of: AsOf = None,
    ) -> CardList:
        """One page of records (with `next_cursor` when there is more); each record lists the
        aliases pointing at it. `as_of` (an event offset or a time): the registry as it was
        then."""
        query = CardQuery(
            registry=self.registry_type,
            space=space,
            name=name,
            version=version,
            uid=None if uid is None else commands.uid_of(uid),
            tags=dict(tags or {}),
            max_date=max_date,
            limit=limit,
            sort_by_timestamp=sort_by_timestamp,
            ignore_release_candidates=ignore_release_candidates,
            include_deleted=include_deleted,
            cursor=cursor,
            as_of=as_of_text(as_of),
        )
        return await self.transport.list_page(query)

    async def list_records(self, **filters: Any) -> list[AliasedCard]:
        """The records (with `status`, `event_offset`) of one page; filters as in list_cards."""
        return (await self.list_page(**filters)).cards

    async def list_cards(self, **filters: Any) -> list[ClientCard]:
        """Cards of this registry matching every filter, newest version first; each card's
        `status` says "active" or, with include_deleted=True, "deleted".

        Filters: space, name, version (exact, '1.*', '1.2.*', '^1.2.0', '~1.2.0', '>=1.2,<2'),
        uid, tags (all must match), max_date, limit, sort_by_timestamp,
        ignore_release_candidates, include_deleted, cursor."""
        return [self._card(r) for r in await self.list_records(**filters)]

    async def iter_cards(self, **filters: Any) -> AsyncIterator[ClientCard]:
        """Every matching card, page by page."""
        cursor = None
        while True:
            page = await self.list_page(**filters, cursor=cursor)
            for record in page.cards:
                yield self._card(record)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def load_card(
        self,
        *,
        uid: UUID | str | None = None,
        space: str | None = None,
        name: str | None = None,
        version: str | None = None,
        include_prereleases: bool = False,
        alias: str | None = None,
        as_of: AsOf = None,
    ) -> ClientCard:
        """One card: by uid, by `alias` of space/name (`alias="prod"`), or the newest version
        of space/name matching `version` (a constraint as in list_cards). Pre-releases are not
        "newest" unless `include_prereleases`, or `version` names one exactly. `as_of` (an
        event offset or a time): as the registry was then ("which version was prod last
        Tuesday at 14:00?")."""
        if uid is None and name is None:
            raise InvalidCommand(
                "load_card needs a uid, or a name (with space, optionally version or alias)"
            )
        if alias is not None:
            if uid is not None or version is not None or space is None or name is None:
                raise InvalidCommand("load_card(alias=...) takes space and name, not uid/version")
            return self._card(await self.alias_record(alias, space=space, name=name, as_of=as_of))
        if uid is not None:
            record = await self.transport.get_card(commands.uid_of(uid), as_of_text(as_of))
            if record.registry != self.registry_type:
                raise WrongRegistry(
                    f"card {uid} is in the {record.registry.value!r} registry, not"
                    f" {self.registry_type.value!r}"
                )
            return self._card(record)
        exact_pre = version is not None and "-" in version and version[0].isdigit()
        found = await self.list_records(
            space=space,
            name=name,
            version=version,
            limit=1,
            ignore_release_candidates=not (include_prereleases or exact_pre),
            as_of=as_of,
        )
        if not found:
            wanted = f"{space or '*'}/{name}" + (f" version {version}" if version else "")
            raise CardNotFound(f"no {self.registry_type.value} card {wanted}")
        return self._card(found[0])

    async def lineage(self, card: Card | UUID | str) -> Lineage:
        """Cards this card points at (upstream) and cards that point at it (downstream)."""
        return await self.transport.lineage(commands.uid_of(card))

    async def run_metrics(
        self, runs: Sequence[Card | UUID | str], names: list[str] | None = None
    ) -> RunMetrics:
        """Metrics by name and step, and parameters, of one or more runs side by side."""
        return await self.transport.run_metrics([commands.uid_of(r) for r in runs], names)

    # ---- artifacts --------------------------------------------------------------------------

    async def download_artifacts(
        self, card: Card, path: str | Path, *, progress: bool | None = None
    ) -> list[Path]:
        """Download every artifact of a registered card into `path`, each verified against its
        recorded sha256 (ArtifactIntegrityError otherwise)."""
        if card.uid is None:
            raise InvalidCommand("this card is not registered: it has no artifacts to download")
        return await self.transport.download_artifacts(
            card.uid, list(card.artifacts), Path(path), progress=progress
        )

    async def load_artifacts(self, card: CardT, path: str | Path | None = None) -> CardT:
        """Download (verified) and rebuild the card's objects: `data` of a DataCard, `model` and
        `sample_data` of a ModelCard. Files stay in `path` (default: a new temp directory)."""
        target = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="opsml-card-"))
        await self.download_artifacts(card, target)
        return await asyncio.to_thread(transfer.rebuild, card, target)


def _open_transport(tracking_uri: str | None, settings: ClientSettings) -> Transport:
    """An http(s) URI: the HTTP API (a client registry); a postgresql:// URI: the registry's
    database (a server registry); anything else: UnsupportedTrackingUri, naming both."""
    uri = tracking_uri or settings.tracking_uri
    if kind_of(uri) == "server":
        from client.server_transport import ServerTransport

        return ServerTransport(uri, settings)
    return HttpTransport(uri, settings)


def __getattr__(name: str) -> Any:
    """Names that lived here before the client was split (kept importable)."""
    if name in ("CardRegistry", "_LoopThread"):  # (client.sync imports this module)
        from client import sync

        return getattr(sync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AlreadyRegistered",
    "AsyncCardRegistry",
    "RegistrationTimeout",
    "RegistryError",
    "RegistryUnavailable",
    "_kafka_security",  # moved to client.publisher, client.http
    "_split_token",
]
