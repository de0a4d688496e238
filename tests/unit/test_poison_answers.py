"""The sequencer's answers to decisions the read tables refused (workers/sequencer/isolation.py),
and which failures count as the data's fault (projection.UNSTORABLE) rather than a lost
connection or a sequencing bug."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import asyncpg.exceptions._base
import orjson
import pytest

from registry_core.domain.cards import RegistryType, RunCard
from registry_core.domain.commands import RegisterCard
from registry_core.domain.decider import INITIAL_STATE, Context, handle
from registry_core.domain.errors import InvalidVersion
from registry_core.domain.events import CardRegistered, CommandRejected
from registry_core.errors import BrokerDataLost, BrokerUnreachable
from registry_core.persistence.projection import UNSTORABLE, LoggedEvent, Unstorable
from workers.sequencer import isolation
from workers.sequencer.supervisor import is_transient

NOW = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def _registered(name: str = "churn", epoch: int = 3, offset: int = 11) -> CardRegistered:
    cmd = RegisterCard(
        command_id=uuid4(), issued_at=NOW, registry=RegistryType.RUN, space="demo", name=name,
        card_type="RunCard", attributes=RunCard(space="demo", name=name).attributes(),
    )  # fmt: skip
    ev = handle(cmd, INITIAL_STATE, {}, Context(NOW, epoch, offset))[0]
    assert isinstance(ev, CardRegistered)
    return ev


def _set_aside(ev: object, *, decided: bool = True, later: bool = False) -> Unstorable:
    return Unstorable(LoggedEvent(5, ev, True), "DataError (22003): out of range.", decided,  # type: ignore[arg-type]
                      later, True)  # fmt: skip


def test_a_refused_decision_is_answered_once_with_its_own_event_id() -> None:
    ev = _registered()
    out = isolation.answers([_set_aside(ev), _set_aside(ev)], epoch=3, now=NOW)
    assert len(out) == 1
    (ans,) = out
    assert isinstance(ans, CommandRejected)
    assert (ans.command_id, ans.error_code, ans.epoch) == (ev.command_id, "unstorable", 3)
    assert ans.event_id != ev.event_id  # same command, same epoch: a second fact
    assert ans.command_offset == ev.command_offset == 11
    assert (ans.registry, ans.space, ans.name) == (RegistryType.RUN, "demo", "churn")
    assert "out of range. Nothing was registered" in ans.reason and ".." not in ans.reason


def test_no_answer_where_the_command_is_answered_otherwise() -> None:
    ev = _registered()
    assert isolation.answers([_set_aside(ev, decided=False)], epoch=3, now=NOW) == []
    assert isolation.answers([_set_aside(ev, later=True)], epoch=3, now=NOW) == []
    # our own answer refused too: not answered again (one round at most)
    ours = isolation.answer(ev.command_id, "x", epoch=3, now=NOW, command_offset=1, about=ev)
    assert isolation.answers([_set_aside(ours)], epoch=3, now=NOW) == []


def test_the_answer_echoes_only_valid_names_and_offsets() -> None:
    ev = _registered()
    bad = ev.model_copy(
        update={"card": ev.card.model_copy(update={"name": "a\x00b", "space": "Not Valid"})}
    )
    ans = isolation.answer(ev.command_id, "p", epoch=4, now=NOW, command_offset=2**63, about=bad)
    assert (ans.registry, ans.space, ans.name, ans.command_offset) == (
        RegistryType.RUN, None, None, None,
    )  # fmt: skip
    orjson.dumps(ans.model_dump(mode="json"))  # storable and encodable


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions.DatetimeFieldOverflowError("date out of range"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds maximum"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $5"),
        OverflowError("date value out of range"),
        orjson.JSONEncodeError("Integer exceeds 64-bit range"),
        InvalidVersion("version part past the column"),
    ],
)
def test_data_errors_are_the_datas_fault(exc: BaseException) -> None:
    assert isinstance(exc, UNSTORABLE)
    assert not is_transient(exc)  # a fresh sequencer would meet the same value


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key: cards_version"),
        asyncpg.exceptions.ForeignKeyViolationError("fk"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ConnectionResetError(),
        RuntimeError("a bug"),
    ],
)
def test_connections_and_sequencing_bugs_are_not(exc: BaseException) -> None:
    assert not isinstance(exc, UNSTORABLE)


def test_infrastructure_errors_say_whether_a_restart_can_help() -> None:
    """The supervisor starts a fresh sequencer after a broker that could not be reached, never
    after one that lost its data (a restart would meet the same log)."""
    assert is_transient(BrokerUnreachable("no broker at 127.0.0.1:1"))
    assert not is_transient(BrokerDataLost("opsml.events ends below offset 9"))
