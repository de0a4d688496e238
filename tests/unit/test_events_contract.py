"""The public event contract: a stored payload of every event type keeps loading, the AsyncAPI
document is generated from the models and up to date, and the subscriber's filters are right."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from client.subscribe import EVENT_TYPES, EventFilter, EventRouter, ReceivedEvent
from registry_core.contracts import codec
from registry_core.contracts.codec import decode_event
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    SequencerStarted,
)
from workers import events_app

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
ALL_TYPES = {m.model_fields["type"].default: m for m in typing.get_args(typing.get_args(Event)[0])}


def _fixture(kind: str) -> dict[str, object]:
    return json.loads((FIXTURES / f"{kind}_v1.json").read_text())


@pytest.mark.parametrize("kind", sorted(ALL_TYPES))
def test_every_event_type_has_a_stored_fixture_that_loads(kind: str) -> None:
    event = decode_event(json.dumps(_fixture(kind)).encode())
    assert isinstance(event, ALL_TYPES[kind])
    assert event.schema_version == 1 and event.event_id and event.command_id and event.occurred_at
    if kind in ("card_registered", "card_updated", "card_deleted"):
        assert event.card.uid  # type: ignore[union-attr]  # the full record travels


def test_a_hypothetical_v0_of_every_type_is_upcast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain runs per type: a v0 shape (`occurred` instead of `occurred_at`) loads as v1."""

    def v0_to_v1(data: dict[str, object]) -> dict[str, object]:
        data = dict(data)
        data["occurred_at"] = data.pop("occurred")
        return data

    for kind in ALL_TYPES:
        monkeypatch.setitem(codec.UPCASTERS, (kind, 0), v0_to_v1)
        old = _fixture(kind)
        old["occurred"] = old.pop("occurred_at")
        old["schema_version"] = 0
        event = decode_event(json.dumps(old).encode())
        assert event.schema_version == 1 and event.occurred_at.year == 2026


def test_asyncapi_document_is_generated_from_the_models_and_current() -> None:
    spec = json.loads(events_app.render())
    assert spec["asyncapi"].startswith("3.")
    channels = spec["channels"]
    assert {c["address"] for c in channels.values()} == {"opsml.events"}
    schemas = spec["components"]["schemas"]
    models = (CardRegistered, CardUpdated, CardDeleted, CommandRejected, SequencerStarted,
              AliasSet, AliasRemoved)  # fmt: skip
    for model in models:
        assert model.__name__ in schemas
        required = set(schemas[model.__name__]["required"])
        assert {"event_id", "command_id", "occurred_at", "epoch"} <= required
    assert "card" in schemas["CardRegistered"]["required"]
    assert {"alias", "version", "uid", "registry", "space", "name"} <= set(
        schemas["AliasSet"]["required"]
    )
    doc = Path(__file__).parent.parent.parent / "docs" / "asyncapi.json"
    assert doc.read_text() == events_app.render(), "run: python -m workers.events_app"


def test_alias_events_filter_by_name_and_type() -> None:
    moved = decode_event(json.dumps(_fixture("alias_set")).encode())
    assert EventFilter.of(
        registry="model", space="demo", name="churn", types=["alias_set"]
    ).matches(moved)
    assert not EventFilter.of(name="other").matches(moved)
    assert not EventFilter.of(types=["alias_removed"]).matches(moved)


def test_filters() -> None:
    reg = decode_event(json.dumps(_fixture("card_registered")).encode())
    upd = decode_event(json.dumps(_fixture("card_updated")).encode())
    rej = decode_event(json.dumps(_fixture("command_rejected")).encode())
    assert EventFilter.of(registry="run", space="demo", name="churn").matches(reg)
    assert not EventFilter.of(registry="model").matches(reg)
    assert EventFilter.of(registry="experiment").matches(reg)  # alias of run
    assert EventFilter.of(tags={"stage": "prod"}).matches(upd)
    assert not EventFilter.of(tags={"stage": "prod"}).matches(reg)
    assert not EventFilter.of(tags={"stage": "prod"}).matches(rej)  # a rejection has no tags
    assert EventFilter.of(registry="run", types=[CommandRejected]).matches(rej)
    assert not EventFilter.of(types=["card_registered"]).matches(upd)
    with pytest.raises(ValueError, match="unknown event types"):
        EventFilter.of(types=["card_created"])
    assert set(EVENT_TYPES) == set(ALL_TYPES)


async def test_router_uses_the_handlers_annotation_as_the_type_filter() -> None:
    router = EventRouter()
    got: dict[str, list[object]] = {"typed": [], "union": [], "raw": []}

    @router.on_event(registry="run")
    async def typed(event: CardRegistered) -> None:
        got["typed"].append(event)

    @router.on_event()
    async def union(event: CardUpdated | CardDeleted) -> None:
        got["union"].append(event)

    @router.on_event(types=["command_rejected"])
    async def raw(event: ReceivedEvent) -> None:
        got["raw"].append(event)

    for offset, kind in enumerate(sorted(ALL_TYPES)):
        await router.dispatch(
            ReceivedEvent(offset, decode_event(json.dumps(_fixture(kind)).encode()))
        )
    assert [type(e) for e in got["typed"]] == [CardRegistered]
    assert sorted(type(e).__name__ for e in got["union"]) == ["CardDeleted", "CardUpdated"]
    assert [e.type for e in got["raw"]] == ["command_rejected"]  # type: ignore[attr-defined]


# The Kafka key of each stored fixture (the registry/space/name of the card it is about, where
# the event itself names one): the sequencer publishes with it and a republish writes it again.
FIXTURE_KEYS = {
    "card_registered": "card",
    "card_updated": None,
    "card_deleted": None,
    "command_rejected": "named",
    "sequencer_started": None,
    "alias_set": "named",
    "alias_removed": "named",
}


@pytest.mark.parametrize("kind", sorted(ALL_TYPES))
def test_the_partition_key_is_a_property_of_the_event_not_of_the_wire(kind: str) -> None:
    data = _fixture(kind)
    event = decode_event(json.dumps(data).encode())
    expected: str | None = None
    if FIXTURE_KEYS[kind] == "card":
        card = typing.cast(dict[str, str], data["card"])
        expected = f"{card['registry']}/{card['space']}/{card['name']}"
    elif FIXTURE_KEYS[kind] == "named" and data.get("name"):
        expected = f"{data['registry']}/{data['space']}/{data['name']}"
    assert event.partition_key == expected
    assert (
        "partition_key" not in event.model_dump()
        and "partition_key" not in codec.encode(event).decode()
    )
    if isinstance(event, CommandRejected):  # an unnamed rejection (undecodable) has no key
        assert event.model_copy(update={"name": None}).partition_key is None
