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

from registry_core.domain.decider import INITIAL_STATE, Context, handle
from registry_core.domain.events import CommandRejected, Event
from registry_core.domain.verdicts import Unstorable, Unstored
from registry_core.persistence.projection import Unstorable as SetAside

__all__ = ["Unstorable", "answer", "answers"]  # (Unstorable lives in registry_core.domain)

_INT64 = 2**63


def answer(
    command_id: UUID,
    problem: str,
    *,
    epoch: int,
    now: datetime,
    command_offset: int | None,
    about: Event | None = None,
) -> CommandRejected:
    """The rejection of a command whose decision could not be stored (or read back): the
    domain's answer to the `Unstored` verdict."""
    if command_offset is not None and not 0 <= command_offset < _INT64:
        command_offset = None
    ctx = Context(now=now, epoch=epoch, command_offset=command_offset)
    (rejection,) = handle(Unstored(command_id, problem, about), INITIAL_STATE, {}, ctx)
    assert isinstance(rejection, CommandRejected)
    return rejection


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
