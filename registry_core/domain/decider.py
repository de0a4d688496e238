"""The sequencer's pure logic: `decide(command, state) -> events` and `evolve(state, event)`.

Decide holds every business rule and raises a `RegistryError` when a command cannot be carried
out; `handle` turns that into a `CommandRejected` fact. Evolve never validates. State is per
sequencing key (registry/space/name): the set of versions already taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from pydantic import ValidationError

from registry_core.domain.cards import CARD_CLASS_FOR_REGISTRY, CardRecord, RegistryType
from registry_core.domain.commands import RegisterCard
from registry_core.domain.errors import InvalidCommand, RegistryError, WrongRegistry
from registry_core.domain.events import (
    CardRegistered,
    CommandRejected,
    Event,
    event_id_for,
    uid_for_command,
)
from registry_core.domain.versioning import next_version


@dataclass(frozen=True)
class NameState:
    """What the sequencer knows about one card name: the versions already taken."""

    versions: frozenset[str] = field(default_factory=frozenset)


INITIAL_STATE = NameState()


@dataclass(frozen=True)
class Context:
    """What decide needs from the outside world, passed in so decide stays pure."""

    now: datetime
    epoch: int
    command_offset: int | None = None


def decide(command: RegisterCard, state: NameState, ctx: Context) -> list[Event]:
    card_cls = CARD_CLASS_FOR_REGISTRY[command.registry]
    if command.card_type != card_cls.card_type:
        raise WrongRegistry(
            f"a {command.card_type} cannot be registered in the {command.registry.value!r}"
            f" registry, which holds {card_cls.card_type}s"
        )
    try:
        # The card class is the schema of the type-specific attributes.
        card_cls(space=command.space, name=command.name, **command.attributes)
    except (ValidationError, TypeError) as exc:
        raise InvalidCommand(f"invalid {command.card_type} attributes: {exc}") from exc

    version = next_version(state.versions, command.version_type, command.version)
    record = CardRecord(
        uid=uid_for_command(command.command_id),
        registry=command.registry,
        space=command.space,
        name=command.name,
        version=version,
        card_type=command.card_type,
        tags=dict(command.tags),
        description=command.description,
        metadata=dict(command.metadata),
        attributes=dict(command.attributes),
        created_at=ctx.now,
        command_id=command.command_id,
        actor=command.actor,
    )
    return [
        CardRegistered(
            event_id=event_id_for(command.command_id, ctx.epoch),
            command_id=command.command_id,
            occurred_at=ctx.now,
            epoch=ctx.epoch,
            command_offset=ctx.command_offset,
            card=record,
        )
    ]


def evolve(state: NameState, event: Event) -> NameState:
    if isinstance(event, CardRegistered):
        return NameState(state.versions | {event.card.version})
    return state


def fold(events: Iterable[Event], state: NameState = INITIAL_STATE) -> NameState:
    for event in events:
        state = evolve(state, event)
    return state


def reject(
    command_id: UUID,
    error: RegistryError,
    ctx: Context,
    *,
    registry: RegistryType | None = None,
    space: str | None = None,
    name: str | None = None,
) -> CommandRejected:
    return CommandRejected(
        event_id=event_id_for(command_id, ctx.epoch),
        command_id=command_id,
        occurred_at=ctx.now,
        epoch=ctx.epoch,
        command_offset=ctx.command_offset,
        error_code=error.code,
        reason=error.message,
        registry=registry,
        space=space,
        name=name,
    )


def handle(command: RegisterCard, state: NameState, ctx: Context) -> list[Event]:
    """`decide`, with a broken business rule recorded as a CommandRejected fact."""
    try:
        return decide(command, state, ctx)
    except RegistryError as error:
        return [
            reject(
                command.command_id,
                error,
                ctx,
                registry=command.registry,
                space=command.space,
                name=command.name,
            )
        ]
