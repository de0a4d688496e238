"""The synchronous registry: CardRegistry runs AsyncCardRegistry's calls on one background event
loop per process, so it blocks like a plain library call and also works where a loop is already
running (Jupyter)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from client.cards import Card as ClientCard
from client.cards import bind
from client.registry import AsyncCardRegistry
from client.transport import Transport
from registry_core import eventloop
from registry_core.contracts.aliases import AliasMove, AliasOut
from registry_core.contracts.http import (
    AliasedCard,
    CardList,
    CommandOutcome,
    Lineage,
    RunMetrics,
)
from registry_core.domain.cards import Card, Metric, RegistryType
from registry_core.domain.versioning import VersionType
from registry_core.settings import ClientSettings

T = TypeVar("T")
CardT = TypeVar("CardT", bound=Card)


class _LoopThread:
    """One background event loop per process, so the sync API works even where a loop is
    already running (Jupyter)."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = eventloop.new_event_loop()  # uvloop when installed
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="opsml-client", daemon=True
        )
        self.thread.start()
        # strong references: a registry nobody closed is closed by CardRegistry.__del__ or at exit
        self.open: set[AsyncCardRegistry] = set()
        atexit.register(self._close_all)

    def _close_all(self) -> None:
        """Registries nobody closed still flush and disconnect cleanly at interpreter exit."""
        for reg in list(self.open):
            try:
                self.run(reg.close())
            except Exception:
                pass

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _LoopThread()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class CardRegistry:
    """The synchronous registry: the same methods as AsyncCardRegistry, blocking. Cards it
    returns load and download synchronously (`card.load()`)."""

    def __init__(
        self,
        registry_type: str | RegistryType,
        *,
        tracking_uri: str | None = None,
        settings: ClientSettings | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._runner = _LoopThread.get()

        async def make() -> AsyncCardRegistry:
            return AsyncCardRegistry(
                registry_type, tracking_uri=tracking_uri, settings=settings, transport=transport
            )

        self._async = self._runner.run(make())
        self._runner.open.add(self._async)
        self.registry_type = self._async.registry_type

    def __enter__(self) -> CardRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.open.discard(self._async)
        self._runner.run(self._async.close())

    def __del__(self) -> None:
        # `CardRegistry("run").register_card(...)` on a throw-away object: close it in the
        # background instead of leaving a Kafka producer open until exit.
        runner = getattr(self, "_runner", None)
        reg = getattr(self, "_async", None)
        if runner is None or reg is None or reg not in runner.open:
            return
        runner.open.discard(reg)
        if runner.loop.is_running():
            asyncio.run_coroutine_threadsafe(reg.close(), runner.loop)

    def _bind(self, card: CardT) -> CardT:
        bind(card, self)
        return card

    # ---- commands ---------------------------------------------------------------------------

    def register_card(
        self,
        card: CardT,
        version_type: str | VersionType = VersionType.MINOR,
        version: str | None = None,
        *,
        pre_tag: str = "rc",
        build_tag: str = "build",
        progress: bool | None = None,
    ) -> CardT:
        registered = self._runner.run(
            self._async.register_card(
                card, version_type, version, pre_tag=pre_tag, build_tag=build_tag, progress=progress
            )
        )
        return self._bind(registered)

    def register_cards(
        self, cards: Sequence[Card], version_type: str | VersionType = VersionType.MINOR
    ) -> list[CommandOutcome]:
        outcomes = self._runner.run(self._async.register_cards(cards, version_type))
        for card in cards:
            self._bind(card)
        return outcomes

    def update_card(self, card: Card) -> ClientCard:
        return self._bind(self._runner.run(self._async.update_card(card)))

    def delete_card(self, card: Card) -> None:
        self._runner.run(self._async.delete_card(card))

    def log_metrics(self, card: Card, metrics: list[Metric]) -> ClientCard:
        return self._bind(self._runner.run(self._async.log_metrics(card, metrics)))

    # ---- queries ----------------------------------------------------------------------------

    def lineage(self, card: Card | UUID | str) -> Lineage:
        return self._runner.run(self._async.lineage(card))

    def run_metrics(
        self, runs: Sequence[Card | UUID | str], names: list[str] | None = None
    ) -> RunMetrics:
        return self._runner.run(self._async.run_metrics(runs, names))

    def list_page(self, **filters: Any) -> CardList:
        return self._runner.run(self._async.list_page(**filters))

    def list_records(self, **filters: Any) -> list[AliasedCard]:
        return self._runner.run(self._async.list_records(**filters))

    def list_cards(self, **filters: Any) -> list[ClientCard]:
        return [self._bind(c) for c in self._runner.run(self._async.list_cards(**filters))]

    def iter_cards(self, **filters: Any) -> Iterator[ClientCard]:
        """Every matching card, page by page (a page is fetched when the previous one is
        used up)."""
        cursor = None
        while True:
            page = self.list_page(**filters, cursor=cursor)
            for record in page.cards:
                yield self._bind(self._async._card(record))
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def set_alias(
        self, alias: str, card: Card | UUID | str | None = None, **where: Any
    ) -> CommandOutcome:
        """Point `alias` at a card (or space/name/version); see AsyncCardRegistry.set_alias."""
        return self._runner.run(self._async.set_alias(alias, card, **where))

    def remove_alias(self, alias: str, *, space: str, name: str) -> CommandOutcome:
        return self._runner.run(self._async.remove_alias(alias, space=space, name=name))

    def list_aliases(self, **where: Any) -> list[AliasOut]:
        """The aliases of space/name (`as_of=` an event offset or a time for the past)."""
        return self._runner.run(self._async.list_aliases(**where))

    def alias_history(self, **where: Any) -> list[AliasMove]:
        """Every move of the aliases of space/name (or `alias=`), newest first."""
        return self._runner.run(self._async.alias_history(**where))

    def load_card(self, **filters: Any) -> ClientCard:
        return self._bind(self._runner.run(self._async.load_card(**filters)))

    # ---- artifacts --------------------------------------------------------------------------

    def download_artifacts(
        self, card: Card, path: str | Path, *, progress: bool | None = None
    ) -> list[Path]:
        return self._runner.run(self._async.download_artifacts(card, path, progress=progress))

    def load_artifacts(self, card: CardT, path: str | Path | None = None) -> CardT:
        return self._runner.run(self._async.load_artifacts(card, path))
