"""The sequencer's pure logic: `decide(command, state, refs) -> events` and `evolve`.

Decide holds every business rule and raises a `RegistryError` when a command cannot be carried
out; `handle` turns that into a `CommandRejected` fact. Evolve never validates.

State is per sequencing key (registry/space/name): the versions already taken, deleted ones
included. `refs` holds the records of the cards a command points at (the target of an update or
delete, lineage references); the worker loads exactly those for each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import semver
from pydantic import ValidationError

from registry_core.domain.cards import (
    CARD_CLASSES,
    Card,
    CardRecord,
    RegistryType,
    card_types_for,
    lineage_uids,
    plain_json,
)
from registry_core.domain.commands import AnyCommand, DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.errors import (
    MAX_REASON,
    CardIsDeleted,
    CardNotFound,
    InvalidCommand,
    NameTaken,
    NotDeletable,
    RegistryError,
    UnknownReference,
    WrongRegistry,
    clip,
    summarize_validation,
)
from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    Event,
    event_id_for,
    uid_for_command,
)
from registry_core.domain.versioning import latest, next_version

Refs = Mapping[UUID, CardRecord]


@dataclass(frozen=True)
class NameState:
    """What the sequencer knows about one card name: the versions already taken, and the
    newest of them (kept so that a bump does not re-parse the whole history)."""

    versions: AbstractSet[str] = field(default_factory=frozenset)
    newest: semver.Version | None = None


INITIAL_STATE = NameState()


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


# Validated attributes by (card class, attributes as JSON): most registrations carry the same
# small attributes (a metadata-only card: its class's defaults), and building the card to
# validate them costs more than the rest of the decision. Only successes are kept; the result is
# kept as JSON and loaded anew for every caller, so no two records share a mutable value.
_ATTRIBUTES_CACHE: dict[tuple[type[Card], bytes], bytes] = {}
_ATTRIBUTES_CACHE_MAX = 4096
_ATTRIBUTES_KEY_MAX = 1024  # bytes of JSON; larger attributes are validated every time


# Only plain JSON values (what a decoded command holds) take part: a UUID object or an enum
# could serialise like a string and validate differently, so it never shares an entry with one.
def _attributes_key(cls: type[Card], attributes: dict[str, Any]) -> tuple[type[Card], bytes] | None:
    try:
        raw = orjson.dumps(attributes)
    except TypeError:  # orjson.JSONEncodeError: big ints, surrogates, ...
        return None
    if len(raw) > _ATTRIBUTES_KEY_MAX or not plain_json(attributes):
        return None
    return cls, raw


def _validated_attributes(
    cls: type[Card], command: AnyCommand, attributes: dict[str, Any]
) -> dict[str, Any]:
    # space and name do not take part: the command validated them with the card's own rule,
    # so they can neither fail here nor change the attributes
    key = _attributes_key(cls, attributes)
    if key is not None:
        hit = _ATTRIBUTES_CACHE.get(key)
        if hit is not None:
            return orjson.loads(hit)  # type: ignore[no-any-return]
    result = _validate_attributes(cls, command, attributes)
    if key is not None:
        try:
            value = orjson.dumps(result)
        except TypeError:
            return result
        if len(_ATTRIBUTES_CACHE) >= _ATTRIBUTES_CACHE_MAX:
            _ATTRIBUTES_CACHE.clear()
        _ATTRIBUTES_CACHE[key] = value
    return result


def _validate_attributes(
    cls: type[Card], command: AnyCommand, attributes: dict[str, Any]
) -> dict[str, Any]:
    try:
        # The card class is the schema of the type-specific attributes.
        card = cls(space=command.space, name=command.name, **attributes)
    except (ValidationError, TypeError) as exc:
        raise InvalidCommand(
            f"invalid {cls.card_type} attributes: {summarize_validation(exc)}"
        ) from exc
    return card.attributes()


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


def _target(command: UpdateCard | DeleteCard, refs: Refs) -> CardRecord:
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
    return [_delete(command, refs, ctx)]


def _register(command: RegisterCard, state: NameState, refs: Refs, ctx: Context) -> Event:
    cls = _card_class(command)
    attributes = _validated_attributes(cls, command, command.attributes)
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
    attributes = _validated_attributes(cls, command, attributes)
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


def _delete(command: DeleteCard, refs: Refs, ctx: Context) -> Event:
    target = _target(command, refs)
    cls = CARD_CLASSES.get(target.card_type)
    if cls is not None and not cls.deletable:
        raise NotDeletable(f"{cls.card_type}s cannot be deleted ({target.key} {target.version})")
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


def evolve(state: NameState, event: Event) -> NameState:
    if isinstance(event, CardRegistered):
        return NameState(state.versions | {event.card.version}, _max(state, event.card.version))
    return state


def _max(state: NameState, version: str) -> semver.Version:
    v = semver.Version.parse(version)
    if state.newest is None and state.versions:
        current = latest(state.versions)
        return v if current is None or v > current else current
    return v if state.newest is None or v > state.newest else state.newest


def fold(events: Iterable[Event], state: NameState = INITIAL_STATE) -> NameState:
    for event in events:
        state = evolve(state, event)
    return state


def remember(refs: MutableMapping[UUID, CardRecord], event: Event) -> None:
    """Keep the batch's view of card records current (a registered card can be referenced, or
    updated, by a later command of the same batch)."""
    if isinstance(event, CardRegistered | CardUpdated | CardDeleted):
        refs[event.card.uid] = event.card


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
    in the same epoch (a decision the read tables refused after it was published, answered by
    a rejection: workers/sequencer/isolation.py), so that the two never share an event id."""
    return CommandRejected(
        **_envelope(command_id, ctx, index),
        error_code=error.code,
        reason=clip(error.message, MAX_REASON),
        registry=registry,
        space=space,
        name=name,
    )


def handle(command: AnyCommand, state: NameState, refs: Refs, ctx: Context) -> list[Event]:
    """`decide`, with a broken business rule recorded as a CommandRejected fact."""
    try:
        return decide(command, state, refs, ctx)
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
