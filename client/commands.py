"""Building commands on the client: a card and a request become a checked RegisterCard,
UpdateCard or DeleteCard, refused here - before anything is sent - wherever the registry would
refuse it for the request's own sake (a wrong card class, a malformed version, a value the store
cannot hold). What depends on the registry's history (a version already taken, a deleted
target) is the sequencer's to decide."""

from __future__ import annotations

import functools
import getpass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import ValidationError

from client.errors import AlreadyRegistered
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import Card, Metric, RegistryType, registry_type
from registry_core.domain.commands import (
    DeleteCard,
    RegisterCard,
    RemoveAlias,
    SetAlias,
    UpdateCard,
)
from registry_core.domain.errors import (
    InvalidCommand,
    InvalidQuery,
    WrongRegistry,
    summarize_validation,
)
from registry_core.domain.versioning import VersionType, next_version

C = TypeVar("C", RegisterCard, UpdateCard, DeleteCard, SetAlias, RemoveAlias)

DEFAULT_PRE_TAG = "rc"
DEFAULT_BUILD_TAG = "build"


def build(cls: type[C], **fields: Any) -> C:
    """Build a command; a value the registry cannot take (a card changed in place after it was
    checked, say) is an InvalidCommand naming the field, before anything is sent."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise InvalidCommand(f"{cls.__name__}: {summarize_validation(exc)}") from None


@functools.cache
def actor() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def resolve_registry(value: str | RegistryType) -> RegistryType:
    try:
        return registry_type(str(value.value if isinstance(value, RegistryType) else value))
    except ValueError as exc:
        raise WrongRegistry(str(exc)) from None


def check_class(card: Card, registry: RegistryType, card_class: type[Card]) -> None:
    if not isinstance(card, card_class):
        raise WrongRegistry(
            f"a {type(card).__name__} cannot be registered in the {registry.value!r} registry,"
            f" which holds {card_class.__name__}s"
        )


def requested_version(card: Card, version: str | None) -> str | None:
    """The version asked for: `version=` or the one written on the card (OpsML users write
    `RunCard(..., version="3.0.0")`); both given must agree."""
    if card.version is None:
        return version
    if version is not None and version.strip() != card.version.strip():
        raise InvalidCommand(
            f"the card says version {card.version!r} but register_card was given"
            f" version={version!r}; give one of them (or the same in both)"
        )
    return card.version


def registration(
    card: Card,
    registry: RegistryType,
    card_class: type[Card],
    version_type: str | VersionType,
    version: str | None,
    pre_tag: str = DEFAULT_PRE_TAG,
    build_tag: str = DEFAULT_BUILD_TAG,
    artifacts: list[ArtifactRef] | None = None,
) -> RegisterCard:
    check_class(card, registry, card_class)
    if card.uid is not None:
        raise AlreadyRegistered(
            f"{card.space}/{card.name} is already registered as version {card.version}"
            f" (uid {card.uid}); create a new card to register a new version"
        )
    try:
        vtype = VersionType(version_type)
    except ValueError:
        known = ", ".join(v.value for v in VersionType)
        raise InvalidCommand(
            f"unknown version_type {version_type!r}; choose one of: {known}"
        ) from None
    command = build(
        RegisterCard,
        command_id=uuid4(),
        issued_at=datetime.now(UTC),
        actor=actor(),
        registry=registry,
        space=card.space,
        name=card.name,
        card_type=card.card_type,
        version_type=vtype,
        version=requested_version(card, version),
        pre_tag=pre_tag,
        build_tag=build_tag,
        tags=card.tags,
        description=card.description,
        metadata=card.metadata,
        attributes=card.attributes(),
        artifacts=artifacts or [],
    )
    if command.version is not None or (pre_tag, build_tag) != (DEFAULT_PRE_TAG, DEFAULT_BUILD_TAG):
        # the request's own rules (a version's shape, a line with a major bump, the tags) are
        # the sequencer's, applied to an empty history: InvalidVersion without a round trip
        next_version((), vtype, command.version, pre_tag=pre_tag, build_tag=build_tag)
    return command


def target(card: Card, card_class: type[Card]) -> UUID:
    if not isinstance(card, card_class) or card.uid is None:
        raise InvalidCommand(
            "pass a registered card of this registry (loaded with load_card/list_cards or"
            " returned by register_card)"
        )
    return card.uid


def envelope(card: Card, registry: RegistryType, card_class: type[Card]) -> dict[str, Any]:
    return {
        "command_id": uuid4(),
        "issued_at": datetime.now(UTC),
        "actor": actor(),
        "registry": registry,
        "space": card.space,
        "name": card.name,
        "uid": target(card, card_class),
    }


def update(card: Card, registry: RegistryType, card_class: type[Card]) -> UpdateCard:
    return build(
        UpdateCard,
        **envelope(card, registry, card_class),
        tags=card.tags,
        description=card.description,
        metadata=card.metadata,
        attributes=card.attributes(),
    )


def add_metrics(
    card: Card, registry: RegistryType, card_class: type[Card], metrics: list[Metric]
) -> UpdateCard:
    try:  # checked again here: a Metric built with model_construct skipped its checks
        checked = [Metric.model_validate(dict(m)) for m in metrics]
    except (ValidationError, TypeError, ValueError) as exc:
        raise InvalidCommand(f"metrics: {summarize_validation(exc)}") from None
    return build(
        UpdateCard,
        **envelope(card, registry, card_class),
        add_metrics=[m.model_dump(mode="json") for m in checked],
    )


def delete(card: Card, registry: RegistryType, card_class: type[Card]) -> DeleteCard:
    return build(DeleteCard, **envelope(card, registry, card_class))


def uid_of(value: Card | UUID | str, what: str = "uid") -> UUID:
    """The card uid a query is about: a registered card's, or a UUID given as such or as text.
    Checked here so that a mistake reads as one, not as the API's parameter error."""
    if isinstance(value, Card):
        if value.uid is None:
            raise InvalidQuery(
                f"{value.space}/{value.name} is not registered (it has no uid): register it, or"
                " load the registered card with load_card/list_cards"
            )
        return value.uid
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidQuery(
            f"{what} {str(value)[:80]!r} is not a card uid (a UUID such as"
            " '0b6e3f1c-5d2a-4c1e-9a53-2f1d7c8e4b10')"
        ) from None
