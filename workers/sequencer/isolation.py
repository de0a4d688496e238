"""The sequencer's answer to poison: decisions the read tables refuse after they were published.

Validation keeps values Postgres cannot hold out of commands and events, but whatever it misses
must not stop the registry: `projection.project` sets such an event aside (archived as not
applied) instead of failing the batch, and the sequencer answers its command with a
`CommandRejected` published right behind it in the log, so the log itself says what became of
the command and every projection of it - live, catch-up, replay - ends with the same tables
(docs/architecture.md, "Poison events"). This module turns what was set aside into those
rejections; the worker publishes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from registry_core.domain.cards import RegistryType
from registry_core.domain.decider import Context, reject
from registry_core.domain.errors import InvalidCommand, InvalidName
from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
)
from registry_core.domain.names import validate_name
from registry_core.persistence.projection import Unstorable as SetAside

# A rejection answering a refused decision of the same epoch gets this event-id index (the
# decision holds 0), so the two facts never share an event id.
ANSWER_INDEX = 1
_INT64 = 2**63


class Unstorable(InvalidCommand):
    """The registry cannot store a value of this command; change the value and send it again."""

    code = "unstorable"


def _valid_name(value: object) -> str | None:
    try:
        return validate_name(value)
    except InvalidName:
        return None


def _where(event: Event | None) -> tuple[RegistryType | None, str | None, str | None]:
    """The command's key, echoed only where it is a valid name (the refusal may be the name)."""
    registry: object
    space: object
    name: object
    if isinstance(event, CardRegistered | CardUpdated | CardDeleted):
        registry, space, name = event.card.registry, event.card.space, event.card.name
    elif isinstance(event, CommandRejected):
        registry, space, name = event.registry, event.space, event.name
    else:
        return None, None, None
    return (
        registry if isinstance(registry, RegistryType) else None,
        _valid_name(space),
        _valid_name(name),
    )


def answer(
    command_id: UUID,
    problem: str,
    *,
    epoch: int,
    now: datetime,
    command_offset: int | None,
    about: Event | None = None,
) -> CommandRejected:
    """The rejection of a command whose decision could not be stored (or read back)."""
    if command_offset is not None and not 0 <= command_offset < _INT64:
        command_offset = None
    ctx = Context(now=now, epoch=epoch, command_offset=command_offset)
    error = Unstorable(
        f"the registry cannot store this command: {problem.rstrip('. ')}. Nothing was"
        " registered; check the command's values (text without NUL characters, numbers and"
        " dates the registry can hold) and send it again"
    )
    registry, space, name = _where(about)
    return reject(
        command_id, error, ctx, registry=registry, space=space, name=name, index=ANSWER_INDEX
    )


def answers(found: Iterable[SetAside], *, epoch: int, now: datetime) -> list[CommandRejected]:
    """One rejection per command left without an outcome by what `project()` set aside. An
    answer of ours that was refused too is not answered again (nothing plainer to say; the
    error is logged), which also bounds the exchange to one round."""
    out: list[CommandRejected] = []
    seen: set[UUID] = set()
    for item in found:
        ev = item.item.event
        if not item.needs_answer or ev.command_id in seen:
            continue
        if isinstance(ev, CommandRejected) and ev.error_code == Unstorable.code:
            continue
        seen.add(ev.command_id)
        out.append(
            answer(
                ev.command_id, item.problem, epoch=epoch, now=now,
                command_offset=ev.command_offset, about=ev,
            )
        )  # fmt: skip
    return out
