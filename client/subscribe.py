"""Downstream services: follow the registry's event stream (`opsml.events`).

    async for event in subscribe(registry="model", tags={"stage": "prod"}, group_id="deployer"):
        await deploy(event.card)          # idempotent by event.event_id (see below)

or, FastStream-router style:

    router = EventRouter()

    @router.on_event(registry="model", tags={"stage": "prod"})
    async def deploy(event: CardRegistered) -> None: ...

    await router.run(group_id="deployer")

Delivery is at least once. With a `group_id` the position is committed to Kafka (the group's
committed offset, written with the partition *assigned*, not group-managed: no group join, so no
rebalance pause - Tansu takes about half the session timeout to join - and the position lives with
the log, so a service resumes wherever it is rescheduled). An event counts as done when the loop
asks for the next one, so a crash or a `break` redelivers at most the events after the last
commit; make the side effect idempotent by `event.event_id` (e.g. store processed ids in the same
transaction as the effect, or use the id as the idempotency key of the call you make).

Events of a fenced-off sequencer (an epoch lower than the highest one already seen) are dropped,
exactly as the projection drops them, and `SequencerStarted` markers are skipped unless asked for.
Reading is gap-free (`registry_core.messaging`: Tansu can briefly expose offset N+1 before N).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import types as pytypes
import typing
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, Union
from uuid import UUID

import httpx
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from client.errors import RegistryUnavailable
from client.registry import _kafka_security, _split_token
from client.server_uri import kind_of, shown
from registry_core import messaging
from registry_core.contracts.http import ClientConfig
from registry_core.domain.cards import CardRecord, RegistryType, registry_type
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    EventBase,
    SequencerStarted,
)
from registry_core.errors import BrokerUnreachable
from registry_core.settings import ClientSettings

log = structlog.get_logger("opsml.subscribe")

From = Literal["latest", "beginning"] | int
EVENT_TYPES: dict[str, type[EventBase]] = {
    "card_registered": CardRegistered,
    "card_updated": CardUpdated,
    "card_deleted": CardDeleted,
    "command_rejected": CommandRejected,
    "sequencer_started": SequencerStarted,
    "alias_set": AliasSet,
    "alias_removed": AliasRemoved,
}
# How far back a subscriber starting mid-log reads to learn the highest epoch so far. A fenced
# sequencer publishes at most one batch after its successor's marker, so any window longer than a
# batch (OPSML_WORKER_BATCH_MAX, 500 by default) contains an event of the current epoch.
EPOCH_LOOKBACK = 5000


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as delivered: the typed event and its offset in the log."""

    offset: int
    event: Event

    @property
    def event_id(self) -> UUID:
        return self.event.event_id

    @property
    def command_id(self) -> UUID:
        return self.event.command_id

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def epoch(self) -> int:
        return self.event.epoch

    @property
    def occurred_at(self) -> datetime:
        return self.event.occurred_at

    @property
    def card(self) -> CardRecord | None:
        """The full card record (None for rejections and markers)."""
        return getattr(self.event, "card", None)


@dataclass(frozen=True)
class EventFilter:
    registry: RegistryType | None = None
    space: str | None = None
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    types: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        registry: str | RegistryType | None = None,
        space: str | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        types: Iterable[str | type[EventBase]] | None = None,
    ) -> EventFilter:
        kinds = None
        if types is not None:
            kinds = frozenset(_type_name(t) for t in types)
            unknown = kinds - set(EVENT_TYPES)
            if unknown:
                raise ValueError(
                    f"unknown event types {sorted(unknown)}; known: {list(EVENT_TYPES)}"
                )
        reg = None
        if registry is not None:
            reg = registry if isinstance(registry, RegistryType) else registry_type(registry)
        return cls(reg, space, name, dict(tags or {}), kinds)

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        card = getattr(event, "card", None)
        if card is not None:
            where = (card.registry, card.space, card.name)
            card_tags: Mapping[str, str] = card.tags
        elif isinstance(event, CommandRejected | AliasSet | AliasRemoved):
            where = (event.registry, event.space, event.name)
            card_tags = {}
        else:
            where, card_tags = (None, None, None), {}
        for wanted, got in zip((self.registry, self.space, self.name), where, strict=True):
            if wanted is not None and wanted != got:
                return False
        return all(card_tags.get(k) == v for k, v in self.tags.items())


def _type_name(t: str | type[EventBase]) -> str:
    if isinstance(t, str):
        return t
    return str(t.model_fields["type"].default)


async def _client_config(tracking_uri: str, settings: ClientSettings) -> ClientConfig:
    if kind_of(tracking_uri) == "server":  # the registry's database: its settings row
        from client.server_config import read_config

        return await read_config(tracking_uri, shown(tracking_uri), settings)
    tracking_uri, uri_token = _split_token(tracking_uri)
    token = settings.token.get_secret_value() if settings.token else uri_token
    try:
        async with httpx.AsyncClient(
            base_url=tracking_uri,
            timeout=settings.request_timeout_seconds,
            headers={"Authorization": f"Bearer {token}"} if token else None,
        ) as http:
            resp = await http.get("/api/v1/config")
            resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(
            f"cannot read the registry's configuration at {tracking_uri}: {exc}"
        ) from exc
    return ClientConfig.model_validate(resp.json())


async def _high_water(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    try:
        return await messaging.high_water(consumer, tp, wait_s=20.0)
    except BrokerUnreachable as exc:
        raise RegistryUnavailable(str(exc)) from None


async def _epoch_before(
    consumer: AIOKafkaConsumer, tp: TopicPartition, position: int, pace: messaging.FetchPace
) -> int:
    """The highest epoch in the window before `position` (see EPOCH_LOOKBACK)."""
    if position <= 0:
        return 0
    reader = messaging.EventLogReader(
        consumer, tp, max(0, position - EPOCH_LOOKBACK), end=position - 1, pace=pace
    )
    while not reader.done:
        await reader.read(timeout_ms=500, max_records=2000)
    return reader.decoder.max_epoch


async def subscribe(
    registry: str | RegistryType | None = None,
    space: str | None = None,
    name: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    types: Iterable[str | type[EventBase]] | None = None,
    from_: From = "latest",
    group_id: str | None = None,
    tracking_uri: str | None = None,
    include_markers: bool = False,
    commit_every: int = 100,
    commit_interval_s: float = 1.0,
    fetch_max_wait_ms: int = 100,
    settings: ClientSettings | None = None,
    on_ready: Callable[[int], object] | None = None,
) -> AsyncGenerator[ReceivedEvent, None]:
    """Events matching every given filter, in log order, forever (break out to stop).

    `from_` ("latest", "beginning" or an offset) applies when `group_id` has no committed
    position yet; with one, the subscription resumes there. Without `group_id` nothing is
    committed. `fetch_max_wait_ms` bounds the delivery latency on Tansu (it does not wake a
    waiting fetch); on Apache Kafka new events arrive at once whatever it is. `on_ready` is called
    with the start offset once the subscription is positioned (a readiness signal).
    """
    settings = settings or ClientSettings()
    uri = (tracking_uri or settings.tracking_uri).rstrip("/")
    wanted = EventFilter.of(registry, space, name, tags, types)
    cfg = await _client_config(uri, settings)
    servers = settings.kafka_bootstrap_servers_override or cfg.kafka.bootstrap_servers
    tp = TopicPartition(cfg.kafka.events_topic, 0)
    consumer = messaging.partition_consumer(
        servers,
        group_id=group_id,
        fetch_max_wait_ms=fetch_max_wait_ms,
        client_kwargs=_kafka_security(cfg.kafka),
    )
    await consumer.start()
    done = committed = -1
    try:
        consumer.assign([tp])  # no group join (see the module docstring)
        start: int | None = await consumer.committed(tp) if group_id else None
        if start is None:
            if from_ == "beginning":
                start = 0
            elif from_ == "latest":
                start = await _high_water(consumer, tp)
            elif isinstance(from_, int) and from_ >= 0:
                start = from_
            else:
                raise ValueError(f"from_ must be 'latest', 'beginning' or an offset, not {from_!r}")
        # one pace for both readers: the wait rises above fetch_max_wait_ms only while the
        # broker needs longer to read its log (Tansu; see FetchPace)
        pace = messaging.FetchPace.following(consumer)
        max_epoch = await _epoch_before(consumer, tp, start, pace)
        done = committed = start
        log.info("subscribed", topic=tp.topic, offset=start, group_id=group_id, epoch=max_epoch)
        reader = messaging.EventLogReader(
            consumer,
            tp,
            start,
            decoder=messaging.EventDecoder(messaging.EpochFence(max_epoch)),
            pace=pace,
        )
        if on_ready is not None:
            on_ready(start)
        last_commit = time.monotonic()
        while True:
            # (undecodable records and gap placeholders of `opsml replay --republish` are
            # skipped by the reader; its position is past them)
            received = await reader.read(timeout_ms=1000, max_records=500)
            for item in received:
                event = item.event
                if not item.applied:
                    log.info("skipping a fenced event", offset=item.offset, epoch=event.epoch)
                elif (include_markers or not isinstance(event, SequencerStarted)) and (
                    wanted.matches(event)
                ):
                    yield ReceivedEvent(item.offset, event)  # resumed = the caller finished it
                done = item.offset + 1
                if group_id and (
                    done - committed >= commit_every
                    or time.monotonic() - last_commit >= commit_interval_s
                ):
                    await consumer.commit({tp: done})
                    committed, last_commit = done, time.monotonic()
            done = max(done, reader.position)
            if group_id and not received and done > committed:
                await consumer.commit({tp: done})
                committed, last_commit = done, time.monotonic()
    finally:
        try:
            if group_id and done > committed:
                await consumer.commit({tp: done})
        finally:
            await consumer.stop()


# ---- FastStream-router-style handlers -------------------------------------------------------

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


@dataclass
class _Route:
    handler: Callable[..., Awaitable[Any]]
    filter: EventFilter
    wants_model: bool


def _annotated_types(handler: Callable[..., Any]) -> tuple[set[str] | None, bool]:
    """Event types a handler's first parameter is annotated with (like a FastStream handler whose
    pydantic parameter *is* the message schema), and whether it wants the bare event model."""
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        raise TypeError(f"{handler.__name__} must take the event as its first parameter")
    try:
        hint = typing.get_type_hints(handler).get(params[0].name)
    except Exception:
        hint = None
    if hint is None or hint is ReceivedEvent:
        return None, False
    members = (
        typing.get_args(hint) if typing.get_origin(hint) in (Union, pytypes.UnionType) else (hint,)
    )
    if typing.get_origin(hint) is typing.Annotated:
        members = typing.get_args(typing.get_args(hint)[0])
    names = {_type_name(m) for m in members if isinstance(m, type) and issubclass(m, EventBase)}
    return (names or None), True


class EventRouter:
    """Handlers for a downstream service; `run` feeds them from one subscription.

    Handlers of one event run in registration order; the event is done (and its position may be
    committed) once all of them returned. A handler that raises stops `run` with that exception,
    uncommitted: after a restart the event is delivered again (at least once).
    """

    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def on_event(
        self,
        registry: str | RegistryType | None = None,
        space: str | None = None,
        name: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        types: Iterable[str | type[EventBase]] | None = None,
    ) -> Callable[[H], H]:
        def register(handler: H) -> H:
            annotated, wants_model = _annotated_types(handler)
            kinds = set(types) if types is not None else annotated
            self.routes.append(
                _Route(handler, EventFilter.of(registry, space, name, tags, kinds), wants_model)
            )
            return handler

        return register

    async def dispatch(self, received: ReceivedEvent) -> int:
        calls = 0
        for route in self.routes:
            if route.filter.matches(received.event):
                await route.handler(received.event if route.wants_model else received)
                calls += 1
        return calls

    async def run(
        self,
        *,
        group_id: str | None = None,
        from_: From = "latest",
        tracking_uri: str | None = None,
        stop: asyncio.Event | None = None,
        **options: Any,
    ) -> None:
        """Deliver events to the handlers until `stop` is set (or forever)."""
        events = subscribe(group_id=group_id, from_=from_, tracking_uri=tracking_uri, **options)
        stopper = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(events))
                finished, _ = await asyncio.wait({nxt, stopper}, return_when="FIRST_COMPLETED")
                if nxt not in finished:
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
                    return
                await self.dispatch(nxt.result())
        finally:
            stopper.cancel()
            await events.aclose()


_default_router = EventRouter()


def on_event(
    registry: str | RegistryType | None = None,
    space: str | None = None,
    name: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    types: Iterable[str | type[EventBase]] | None = None,
) -> Callable[[H], H]:
    """Register a handler on the module's default router (run it with `run_handlers`)."""
    return _default_router.on_event(registry, space, name, tags=tags, types=types)


async def run_handlers(
    *,
    group_id: str | None = None,
    from_: From = "latest",
    tracking_uri: str | None = None,
    stop: asyncio.Event | None = None,
    **options: Any,
) -> None:
    await _default_router.run(
        group_id=group_id, from_=from_, tracking_uri=tracking_uri, stop=stop, **options
    )
