"""The decider (pure): every decision the sequencer makes.

`decide(command, state, refs, ctx) -> events` holds every business rule and raises a
`RegistryError` when a command cannot be carried out. `handle` is the one entry the worker
calls: it turns such an error into a `CommandRejected` fact, and does the same for what the
worker's checks outside the domain found, handed in as plain verdicts (access control, artifacts,
a message that is no command, a decision the tables refused: registry_core/domain/verdicts.py).
So no rejection is built anywhere else. State and `evolve` are in registry_core/domain/state.py.

`refs` holds the records of the cards a command points at (the target of an update or delete,
lineage references); the worker loads exactly those for each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from registry_core.domain import aliases as card_aliases
from registry_core.domain import attributes as card_attributes
from registry_core.domain.cards import (
    CARD_CLASSES,
    Card,
    CardRecord,
    RegistryType,
    card_types_for,
    lineage_uids,
)
from registry_core.domain.commands import (
    AnyCommand,
    DeleteCard,
    RegisterCard,
    RemoveAlias,
    SetAlias,
    UpdateCard,
)
from registry_core.domain.errors import (
    MAX_REASON,
    CardIsDeleted,
    CardNotFound,
    InvalidCommand,
    InvalidName,
    NameTaken,
    NotDeletable,
    RegistryError,
    UnknownReference,
    WrongRegistry,
    clip,
)
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    event_id_for,
    uid_for_command,
)
from registry_core.domain.names import validate_name
from registry_core.domain.state import (
    INITIAL_STATE,
    NameState,
    Refs,
    evolve,
    fold,
    remember,
)
from registry_core.domain.verdicts import (
    ANSWER_INDEX,
    Refused,
    Unreadable,
    Unstorable,
    Unstored,
)
from registry_core.domain.versioning import next_version

__all__ = [  # (state and evolve are re-exported: callers import them from here too)
    "INITIAL_STATE",
    "Context",
    "NameState",
    "Refs",
    "Refused",
    "Subject",
    "decide",
    "evolve",
    "fold",
    "handle",
    "referenced_uids",
    "reject",
    "remember",
]


@dataclass(frozen=True)
class Context:
    """What decide needs from the outside world, passed in so decide stays pure."""

    now: datetime
    epoch: int
    command_offset: int | None = None


def referenced_uids(command: AnyCommand) -> list[UUID]:
    """The cards whose records `decide` needs for this command (the worker loads them)."""
    if isinstance(command, RegisterCard):
        cls = CARD_CLASSES.get(command.card_type)
        try:
            return lineage_uids(cls, command.attributes) if cls else []
        except (ValueError, TypeError):
            return []  # malformed uids: decide reports them properly
    if isinstance(command, RemoveAlias):
        return []  # (the name's state says where the alias points)
    uids = [command.uid]
    if isinstance(command, UpdateCard) and command.attributes:
        # lineage fields may change; the card class is only known from the target record, so
        # take every uid-looking value of the new attributes
        for value in command.attributes.values():
            for item in value if isinstance(value, list) else [value]:
                try:
                    uids.append(UUID(str(item)))
                except ValueError:
                    pass
    return uids


def _card_class(command: RegisterCard) -> type[Card]:
    cls = CARD_CLASSES.get(command.card_type)
    if cls is None or cls.registry_type is not command.registry:
        accepted = " or ".join(card_types_for(command.registry))
        raise WrongRegistry(
            f"a {command.card_type} cannot be registered in the {command.registry.value!r}"
            f" registry, which holds {accepted}s"
        )
    return cls


def _check_lineage(cls: type[Card], attributes: dict[str, Any], refs: Refs) -> None:
    for field_name, allowed in cls.lineage_fields.items():
        value = attributes.get(field_name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            uid = UUID(str(item))
            ref = refs.get(uid)
            if ref is None or ref.status == "deleted":
                state = "was deleted" if ref is not None else "does not match any registered card"
                raise UnknownReference(f"{field_name}: {uid} {state}")
            if allowed is not None and ref.registry not in allowed:
                want = " or ".join(r.value for r in allowed)
                raise UnknownReference(
                    f"{field_name}: {uid} is a {ref.card_type} in the {ref.registry.value!r}"
                    f" registry; expected a card from the {want!r} registry"
                )


def _target(command: UpdateCard | DeleteCard | SetAlias, refs: Refs) -> CardRecord:
    target = refs.get(command.uid)
    if target is None or target.key != command.key:
        where = f" (it is {target.key})" if target is not None else ""
        raise CardNotFound(f"no card with uid {command.uid} in {command.key}{where}")
    if target.status == "deleted":
        raise CardIsDeleted(
            f"{target.key} version {target.version} (uid {target.uid}) was deleted;"
            " its version stays taken but it can no longer change"
        )
    return target


def decide(command: AnyCommand, state: NameState, refs: Refs, ctx: Context) -> list[Event]:
    if isinstance(command, RegisterCard):
        return [_register(command, state, refs, ctx)]
    if isinstance(command, UpdateCard):
        return [_update(command, refs, ctx)]
    if isinstance(command, SetAlias):
        fields = card_aliases.set_alias(
            command.alias, _target(command, refs), state.aliases, command.actor
        )
        return [AliasSet(**_envelope(command.command_id, ctx), **fields)]
    if isinstance(command, RemoveAlias):
        fields = card_aliases.remove_alias(command.key, command.alias, state.aliases, command.actor)
        where: dict[str, Any] = {
            "registry": command.registry, "space": command.space, "name": command.name,
        }  # fmt: skip
        return [AliasRemoved(**_envelope(command.command_id, ctx), **where, **fields)]
    return [_delete(command, state, refs, ctx)]


def _register(command: RegisterCard, state: NameState, refs: Refs, ctx: Context) -> Event:
    cls = _card_class(command)
    attributes = card_attributes.validated(cls, command, command.attributes)
    if cls.once_per_name and state.versions:
        raise NameTaken(
            f"{cls.card_type}s register once per space/name and {command.key} exists;"
            " update it instead"
        )
    _check_lineage(cls, attributes, refs)
    version = next_version(
        state.versions,
        command.version_type,
        command.version,
        pre_tag=command.pre_tag,
        build_tag=command.build_tag,
        newest=state.newest,
    )
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
        attributes=attributes,
        artifacts=list(command.artifacts),
        created_at=ctx.now,
        command_id=command.command_id,
        actor=command.actor,
    )
    return CardRegistered(**_envelope(command.command_id, ctx), card=record)


def _update(command: UpdateCard, refs: Refs, ctx: Context) -> Event:
    target = _target(command, refs)
    cls = CARD_CLASSES.get(target.card_type)
    if cls is None:  # pragma: no cover - records are written by decide
        raise InvalidCommand(f"unknown card type {target.card_type}")
    attributes = dict(target.attributes)
    if command.attributes:
        attributes.update(command.attributes)
    if command.add_metrics:
        if "metrics" not in cls.model_fields:
            raise InvalidCommand(f"{cls.card_type}s have no metrics")
        attributes["metrics"] = [*attributes.get("metrics", []), *command.add_metrics]
    attributes = card_attributes.validated(cls, command, attributes)
    # only references this update sets are checked (existing ones were checked when written)
    changed_refs = {k: attributes[k] for k in (command.attributes or {}) if k in attributes}
    _check_lineage(cls, changed_refs, refs)
    changes: dict[str, Any] = {"attributes": attributes}
    if command.tags is not None:
        changes["tags"] = dict(command.tags)
    if command.description is not None:
        changes["description"] = command.description
    if command.metadata is not None:
        changes["metadata"] = dict(command.metadata)
    changed = sorted(k for k, v in changes.items() if getattr(target, k) != v)
    record = target.model_copy(update={**changes, "updated_at": ctx.now})
    return CardUpdated(**_envelope(command.command_id, ctx), card=record, changed=changed)


def _delete(command: DeleteCard, state: NameState, refs: Refs, ctx: Context) -> Event:
    target = _target(command, refs)
    cls = CARD_CLASSES.get(target.card_type)
    if cls is not None and not cls.deletable:
        raise NotDeletable(f"{cls.card_type}s cannot be deleted ({target.key} {target.version})")
    card_aliases.check_deletable(target, state.aliases)
    record = target.model_copy(update={"status": "deleted", "updated_at": ctx.now})
    return CardDeleted(**_envelope(command.command_id, ctx), card=record)


def _envelope(command_id: UUID, ctx: Context, index: int = 0) -> dict[str, Any]:
    return {
        "event_id": event_id_for(command_id, ctx.epoch, index),
        "command_id": command_id,
        "occurred_at": ctx.now,
        "epoch": ctx.epoch,
        "command_offset": ctx.command_offset,
    }


def reject(
    command_id: UUID,
    error: RegistryError,
    ctx: Context,
    *,
    registry: RegistryType | None = None,
    space: str | None = None,
    name: str | None = None,
    index: int = 0,
) -> CommandRejected:
    """`error` as the command's outcome. `index` > 0 for a second fact about the same command
    in the same epoch, so that the two never share an event id."""
    return _rejected(command_id, Refused.because(error), ctx, registry, space, name, index)


def _rejected(
    command_id: UUID,
    refused: Refused,
    ctx: Context,
    registry: RegistryType | None,
    space: str | None,
    name: str | None,
    index: int = 0,
) -> CommandRejected:
    return CommandRejected(
        **_envelope(command_id, ctx, index),
        error_code=refused.code,
        reason=clip(refused.reason, MAX_REASON),
        registry=registry,
        space=space,
        name=name,
    )


Subject = AnyCommand | Unreadable | Unstored
_NOT_COMMANDS = (Unreadable, Unstored)


def handle(
    subject: Subject, state: NameState, refs: Refs, ctx: Context, refused: Refused | None = None
) -> list[Event]:
    """The decision on anything the sequencer must answer. A command is decided, and a broken
    business rule recorded as a CommandRejected fact, unless a check outside the domain refused
    it first (`refused`: it is then rejected with that verdict, undecided). What is not a command
    (`Unreadable`, `Unstored`) is answered with its rejection; `state` and `refs` are not read."""
    if isinstance(subject, _NOT_COMMANDS):
        return [_answer(subject, ctx)]
    if refused is None:
        try:
            return decide(subject, state, refs, ctx)
        except RegistryError as error:
            refused = Refused.because(error)
    return [
        _rejected(subject.command_id, refused, ctx, subject.registry, subject.space, subject.name)
    ]


def _answer(subject: Unreadable | Unstored, ctx: Context) -> CommandRejected:
    if isinstance(subject, Unreadable):
        if subject.registry in RegistryType._value2member_map_:
            return _rejected(
                subject.command_id, subject.refused, ctx, RegistryType(str(subject.registry)),
                subject.space, subject.name,  # type: ignore[arg-type]
            )  # fmt: skip
        return _rejected(subject.command_id, subject.refused, ctx, None, None, None)
    error = Unstorable(
        f"the registry cannot store this command: {subject.problem.rstrip('. ')}. Nothing was"
        " registered; check the command's values (text without NUL characters, numbers and"
        " dates the registry can hold) and send it again"
    )
    registry, space, name = _where(subject.about)
    return _rejected(
        subject.command_id, Refused.because(error), ctx, registry, space, name, ANSWER_INDEX
    )


def _where(event: Event | None) -> tuple[RegistryType | None, str | None, str | None]:
    """A refused decision's key, echoed only where it is a valid name (the refusal may be the
    name)."""
    registry: object
    space: object
    name: object
    if isinstance(event, CardRegistered | CardUpdated | CardDeleted):
        registry, space, name = event.card.registry, event.card.space, event.card.name
    elif isinstance(event, CommandRejected | AliasSet | AliasRemoved):
        registry, space, name = event.registry, event.space, event.name
    else:
        return None, None, None
    return (
        registry if isinstance(registry, RegistryType) else None,
        _valid_name(space),
        _valid_name(name),
    )


def _valid_name(value: object) -> str | None:
    try:
        return validate_name(value)
    except InvalidName:
        return None
