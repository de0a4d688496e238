"""decide/evolve, given(events) / when(command) / then(events | error), on plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.commands import AnyCommand, DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.decider import Context, decide, fold, handle, remember
from registry_core.domain.errors import (
    CardIsDeleted,
    CardNotFound,
    InvalidCommand,
    NameTaken,
    NotDeletable,
    UnknownReference,
    VersionConflict,
    WrongRegistry,
)
from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    uid_for_command,
)
from registry_core.domain.state import NameState, evolve
from registry_core.domain.verdicts import Refused, Unreadable, Unstorable, Unstored

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = Context(now=NOW, epoch=1, command_offset=0)


def register(**overrides: Any) -> RegisterCard:
    fields: dict[str, Any] = {
        "command_id": uuid4(),
        "issued_at": NOW,
        "registry": RegistryType.RUN,
        "space": "demo",
        "name": "churn",
        "card_type": "RunCard",
    }
    fields.update(overrides)
    return RegisterCard(**fields)


def of(card: CardRecord, cls: type[UpdateCard] | type[DeleteCard], **fields: Any) -> AnyCommand:
    base = {
        "command_id": uuid4(),
        "issued_at": NOW,
        "registry": card.registry,
        "space": card.space,
        "name": card.name,
        "uid": card.uid,
    }
    return cls(**base | fields)


class World:
    """The history so far; `when` decides a command against it (and records the outcome)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refs: dict[UUID, CardRecord] = {}

    def state(self, key: str):
        return fold(e for e in self.events if isinstance(e, CardRegistered) and e.card.key == key)

    def when(self, command: AnyCommand) -> list[Event]:
        events = decide(command, self.state(command.key), self.refs, CTX)
        for e in events:
            remember(self.refs, e)
        self.events += events
        return events

    def given(self, *commands: AnyCommand) -> list[CardRecord]:
        return [self.when(c)[0].card for c in commands]  # type: ignore[union-attr]


def versions(events: list[Event]) -> list[str]:
    return [e.card.version for e in events if isinstance(e, CardRegistered)]


def test_first_registration_is_1_0_0_with_uid_from_command_id() -> None:
    cmd = register()
    [event] = World().when(cmd)
    assert isinstance(event, CardRegistered)
    assert event.card.version == "1.0.0"
    assert event.card.uid == uid_for_command(cmd.command_id)
    assert event.command_id == cmd.command_id
    assert event.command_offset == 0 and event.epoch == 1 and event.occurred_at == NOW


def test_three_sequential_registrations() -> None:
    w = World()
    w.given(register(), register(), register())
    assert versions(w.events) == ["1.0.0", "1.1.0", "1.2.0"]


@pytest.mark.parametrize(
    ("vt", "expected"),
    [("major", "2.0.0"), ("minor", "1.1.0"), ("patch", "1.0.1"), ("build", "1.0.0+build.1")],
)
def test_version_types(vt: str, expected: str) -> None:
    w = World()
    w.given(register())
    [event] = w.when(register(version_type=vt))
    assert isinstance(event, CardRegistered) and event.card.version == expected


def test_same_command_same_decision() -> None:
    w = World()
    w.given(register())
    cmd = register()
    state = w.state(cmd.key)
    assert decide(cmd, state, w.refs, CTX) == decide(cmd, state, w.refs, CTX)


def test_names_are_independent() -> None:
    w = World()
    w.given(register(), register(name="other"), register())
    assert versions(w.events) == ["1.0.0", "1.0.0", "1.1.0"]


def test_wrong_card_type_for_registry() -> None:
    with pytest.raises(WrongRegistry, match="cannot be registered in the 'run' registry"):
        World().when(register(card_type="ModelCard"))


def test_experiment_cards_live_in_the_run_registry() -> None:
    [event] = World().when(register(registry="experiment", card_type="ExperimentCard"))
    assert isinstance(event, CardRegistered) and event.card.registry is RegistryType.RUN


def test_invalid_attributes() -> None:
    with pytest.raises(InvalidCommand, match="invalid RunCard attributes"):
        World().when(register(attributes={"no_such_field": 1}))


def test_taken_explicit_version() -> None:
    w = World()
    w.given(register())
    with pytest.raises(VersionConflict):
        w.when(register(version="1.0.0"))


def test_handle_turns_errors_into_rejections() -> None:
    cmd = register(card_type="DataCard")
    [event] = handle(cmd, fold([]), {}, CTX)
    assert isinstance(event, CommandRejected)
    assert event.error_code == "wrong_registry"
    assert event.command_id == cmd.command_id
    assert (event.registry, event.space, event.name) == (RegistryType.RUN, "demo", "churn")


def test_rejections_do_not_take_versions() -> None:
    events: list[Event] = []
    for cmd in (register(), register(card_type="DataCard"), register()):
        events += handle(cmd, fold(events), {}, CTX)
    assert versions(events) == ["1.0.0", "1.1.0"]


def test_uid_is_deterministic() -> None:
    cid = UUID("00000000-0000-0000-0000-000000000001")
    assert uid_for_command(cid) == uid_for_command(cid)
    assert uid_for_command(cid) != uid_for_command(uuid4())


# ---- update and delete ----------------------------------------------------------------------


def test_update_changes_fields_not_the_version() -> None:
    w = World()
    [card] = w.given(register(tags={"a": "1"}, attributes={"parameters": {"lr": 0.1}}))
    [event] = w.when(of(card, UpdateCard, tags={"a": "2"}, attributes={"parameters": {"lr": 0.2}}))
    assert isinstance(event, CardUpdated)
    assert event.card.version == card.version and event.card.uid == card.uid
    assert event.card.tags == {"a": "2"} and event.card.attributes["parameters"] == {"lr": 0.2}
    assert event.changed == ["attributes", "tags"] and event.card.updated_at == NOW


def test_metrics_can_be_appended_to_a_run() -> None:
    w = World()
    [card] = w.given(register(attributes={"metrics": [{"name": "loss", "value": 1.0, "step": 0}]}))
    [event] = w.when(of(card, UpdateCard, add_metrics=[{"name": "loss", "value": 0.5, "step": 1}]))
    assert isinstance(event, CardUpdated)
    assert [m["value"] for m in event.card.attributes["metrics"]] == [1.0, 0.5]


def test_delete_leaves_the_version_taken() -> None:
    w = World()
    [_, b] = w.given(register(), register())
    [event] = w.when(of(b, DeleteCard))
    assert isinstance(event, CardDeleted) and event.card.status == "deleted"
    [c] = w.given(register())
    assert c.version == "1.2.0"  # 1.1.0 is never reused
    with pytest.raises(CardIsDeleted):
        w.when(of(b, UpdateCard, tags={"x": "y"}))
    with pytest.raises(CardIsDeleted):
        w.when(of(b, DeleteCard))


def test_unknown_uid_or_wrong_name() -> None:
    w = World()
    [card] = w.given(register())
    ghost = card.model_copy(update={"uid": uuid4()})
    with pytest.raises(CardNotFound, match="no card with uid"):
        w.when(of(ghost, DeleteCard))
    moved = card.model_copy(update={"name": "elsewhere"})
    with pytest.raises(CardNotFound, match="it is run/demo/churn"):
        w.when(of(moved, UpdateCard, tags={}))


@pytest.mark.parametrize(
    ("registry", "card_type"), [("pipeline", "PipelineCard"), ("project", "ProjectCard")]
)
def test_pipeline_and_project_cards_cannot_be_deleted(registry: str, card_type: str) -> None:
    w = World()
    [card] = w.given(register(registry=registry, card_type=card_type))
    with pytest.raises(NotDeletable, match=f"{card_type}s cannot be deleted"):
        w.when(of(card, DeleteCard))


def test_project_cards_register_once_per_name() -> None:
    w = World()
    w.given(register(registry="project", card_type="ProjectCard"))
    with pytest.raises(NameTaken, match="register once per space/name"):
        w.when(register(registry="project", card_type="ProjectCard"))


# ---- lineage -------------------------------------------------------------------------------


def test_lineage_references_are_checked() -> None:
    w = World()
    [data] = w.given(register(registry="data", card_type="DataCard"))
    [model] = w.given(
        register(
            registry="model", card_type="ModelCard", attributes={"datacard_uid": str(data.uid)}
        )
    )
    assert model.attributes["datacard_uid"] == str(data.uid)
    with pytest.raises(UnknownReference, match="does not match any registered card"):
        w.when(
            register(
                registry="model", card_type="ModelCard", attributes={"datacard_uid": str(uuid4())}
            )
        )
    with pytest.raises(UnknownReference, match="expected a card from the 'data' registry"):
        w.when(
            register(
                registry="model", card_type="ModelCard", attributes={"datacard_uid": str(model.uid)}
            )
        )
    # audit cards may point at any card
    [audit] = w.given(
        register(
            registry="audit",
            card_type="AuditCard",
            attributes={"card_uids": [str(data.uid), str(model.uid)]},
        )
    )
    w.when(of(data, DeleteCard))
    with pytest.raises(UnknownReference, match="was deleted"):
        w.when(
            register(
                registry="run", card_type="RunCard", attributes={"datacard_uids": [str(data.uid)]}
            )
        )
    assert audit.attributes["approved"] is False


def test_metrics_update_of_a_run_with_lineage_needs_no_reference_lookup() -> None:
    w = World()
    [data] = w.given(register(registry="data", card_type="DataCard"))
    [run] = w.given(register(attributes={"datacard_uids": [str(data.uid)]}))
    refs_without_data = {run.uid: run}  # what the worker loads for a metrics-only update
    cmd = of(run, UpdateCard, add_metrics=[{"name": "loss", "value": 0.1, "step": 0}])
    [event] = decide(cmd, w.state(cmd.key), refs_without_data, CTX)
    assert isinstance(event, CardUpdated) and event.card.attributes["metrics"][0]["value"] == 0.1


# ---- verdicts: what the worker's checks found, decided here ---------------------------------


def test_a_refused_command_is_rejected_with_the_verdict_and_not_decided() -> None:
    cmd = register()
    [event] = handle(cmd, fold([]), {}, CTX, Refused("forbidden", "token t1 may not write"))
    assert isinstance(event, CommandRejected)
    assert (event.error_code, event.reason) == ("forbidden", "token t1 may not write")
    assert (event.registry, event.space, event.name) == (RegistryType.RUN, "demo", "churn")
    assert event.event_id == handle(cmd, fold([]), {}, CTX)[0].event_id  # same envelope rule
    # a verdict wins over a decision that would have succeeded, and takes no version
    assert versions(handle(cmd, fold([]), {}, CTX, Refused.because(InvalidCommand("x")))) == []


def test_an_unreadable_message_echoes_its_key_only_for_a_known_registry() -> None:
    why = Refused.because(InvalidCommand("not json"))
    cid = uuid4()
    [ours] = handle(Unreadable(cid, why, "run", "demo", "churn"), fold([]), {}, CTX)
    assert isinstance(ours, CommandRejected) and ours.command_id == cid
    assert (ours.error_code, ours.reason) == ("invalid_command", "not json")
    assert (ours.registry, ours.space, ours.name) == (RegistryType.RUN, "demo", "churn")
    [other] = handle(Unreadable(cid, why, "nope", "demo", "churn"), fold([]), {}, CTX)
    assert isinstance(other, CommandRejected)
    assert (other.registry, other.space, other.name) == (None, None, None)


def test_an_unstored_decision_is_answered_by_a_second_fact() -> None:
    [decision] = World().when(register())
    [answer] = handle(Unstored(decision.command_id, "out of range.", decision), fold([]), {}, CTX)
    assert isinstance(answer, CommandRejected) and answer.error_code == Unstorable.code
    assert answer.event_id != decision.event_id and answer.command_id == decision.command_id
    assert answer.reason.startswith("the registry cannot store this command: out of range. ")
    assert (answer.registry, answer.space, answer.name) == (RegistryType.RUN, "demo", "churn")


# ---- evolve ---------------------------------------------------------------------------------


def test_evolve_grows_an_owned_set_in_place_and_copies_any_other() -> None:
    w = World()
    w.given(register(), register(version="3.0.0-rc.1"), register(version="2.0.0"))
    pure = fold(w.events)
    assert pure.versions == {"1.0.0", "3.0.0-rc.1", "2.0.0"} and str(pure.newest) == "3.0.0-rc.1"
    assert isinstance(pure.versions, frozenset)
    owned = NameState(set())
    state = owned
    for e in w.events:
        state = evolve(state, e)
    assert state == pure and state.versions is owned.versions  # one set, grown in place
    assert evolve(pure, w.events[0]) is not pure and fold([]).versions == frozenset()


def test_evolve_keeps_the_newest_by_precedence() -> None:
    w = World()
    w.given(register(version="1.10.0"), register(version="1.9.0"), register(version="1.11.0-rc.1"))
    assert str(fold(w.events).newest) == "1.11.0-rc.1"
    w.given(register(version="1.11.0"))
    assert str(fold(w.events).newest) == "1.11.0"
    # a state given without its newest finds it among its versions
    [e] = World().when(register(version="1.2.0"))
    assert str(evolve(NameState(frozenset({"1.5.0"})), e).newest) == "1.5.0"
