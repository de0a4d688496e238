"""decide/evolve, given(events) / when(command) / then(events | error), on plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from registry_core.domain.cards import RegistryType
from registry_core.domain.commands import RegisterCard
from registry_core.domain.decider import Context, decide, fold, handle
from registry_core.domain.errors import InvalidCommand, VersionConflict, WrongRegistry
from registry_core.domain.events import CardRegistered, CommandRejected, Event, uid_for_command

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


def state_for(key: str, events: list[Event]):
    """State is per sequencing key (registry/space/name): fold only that name's events."""
    return fold(e for e in events if isinstance(e, CardRegistered) and e.card.key == key)


def given(*commands: RegisterCard) -> list[Event]:
    """The events that registering `commands` in order produces."""
    events: list[Event] = []
    for cmd in commands:
        events += decide(cmd, state_for(cmd.key, events), CTX)
    return events


def versions(events: list[Event]) -> list[str]:
    return [e.card.version for e in events if isinstance(e, CardRegistered)]


def test_first_registration_is_1_0_0_with_uid_from_command_id() -> None:
    cmd = register()
    [event] = decide(cmd, fold([]), CTX)
    assert isinstance(event, CardRegistered)
    assert event.card.version == "1.0.0"
    assert event.card.uid == uid_for_command(cmd.command_id)
    assert event.command_id == cmd.command_id
    assert event.command_offset == 0 and event.epoch == 1 and event.occurred_at == NOW


def test_three_sequential_registrations() -> None:
    assert versions(given(register(), register(), register())) == ["1.0.0", "1.1.0", "1.2.0"]


@pytest.mark.parametrize(
    ("vt", "expected"), [("major", "2.0.0"), ("minor", "1.1.0"), ("patch", "1.0.1")]
)
def test_version_types(vt: str, expected: str) -> None:
    history = given(register())
    [event] = decide(register(version_type=vt), fold(history), CTX)
    assert isinstance(event, CardRegistered) and event.card.version == expected


def test_same_command_same_decision() -> None:
    cmd = register()
    state = fold(given(register()))
    assert decide(cmd, state, CTX) == decide(cmd, state, CTX)


def test_names_are_independent() -> None:
    history = given(register(), register(name="other"), register())
    assert versions(history) == ["1.0.0", "1.0.0", "1.1.0"]


def test_wrong_card_type_for_registry() -> None:
    with pytest.raises(WrongRegistry, match="cannot be registered in the 'run' registry"):
        decide(register(card_type="ModelCard"), fold([]), CTX)


def test_invalid_attributes() -> None:
    with pytest.raises(InvalidCommand, match="invalid RunCard attributes"):
        decide(register(attributes={"no_such_field": 1}), fold([]), CTX)


def test_taken_explicit_version() -> None:
    history = given(register())
    with pytest.raises(VersionConflict):
        decide(register(version="1.0.0"), fold(history), CTX)


def test_handle_turns_errors_into_rejections() -> None:
    cmd = register(card_type="DataCard")
    [event] = handle(cmd, fold([]), CTX)
    assert isinstance(event, CommandRejected)
    assert event.error_code == "wrong_registry"
    assert event.command_id == cmd.command_id
    assert (event.registry, event.space, event.name) == (RegistryType.RUN, "demo", "churn")


def test_rejections_do_not_take_versions() -> None:
    events: list[Event] = []
    for cmd in (register(), register(card_type="DataCard"), register()):
        events += handle(cmd, fold(events), CTX)
    assert versions(events) == ["1.0.0", "1.1.0"]


def test_uid_is_deterministic() -> None:
    cid = UUID("00000000-0000-0000-0000-000000000001")
    assert uid_for_command(cid) == uid_for_command(cid)
    assert uid_for_command(cid) != uid_for_command(uuid4())
