"""Commands (pure): what clients ask the sequencer to do. Wire contract, `schema_version` 1.

A command carries a client-made `command_id`; everything the sequencer derives from it (the UID,
the event ids) is a function of that id, so a redelivered command maps to the same card. Every
command is keyed by registry/space/name, the unit versions are sequenced in.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, field_validator

from registry_core.domain.aliases import validate_alias
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.bounds import Storable, StoredDatetime
from registry_core.domain.cards import (
    MAX_DESCRIPTION_LENGTH,
    REGISTRY_ALIASES,
    RegistryType,
    _check_tags,
    card_key,
)
from registry_core.domain.names import validate_name
from registry_core.domain.versioning import VersionType

COMMAND_SCHEMA_VERSION: Literal[1] = 1


class CommandBase(Storable):
    """Every field of every command is checked to what the registry can store (`Storable`):
    a command the schema accepts is one the projection can write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    command_id: UUID
    issued_at: StoredDatetime
    actor: str | None = Field(default=None, max_length=256)

    registry: RegistryType
    space: str
    name: str

    @field_validator("registry", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return REGISTRY_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("space", "name")
    @classmethod
    def _valid_name(cls, value: str, info: Any) -> str:
        return validate_name(value, field=info.field_name)

    @property
    def key(self) -> str:
        return card_key(self.registry, self.space, self.name)


class RegisterCard(CommandBase):
    """Register a new version of a card."""

    type: Literal["register_card"] = "register_card"
    card_type: str = Field(max_length=64)
    version_type: VersionType = VersionType.MINOR
    version: str | None = Field(default=None, max_length=256)
    pre_tag: str = Field(default="rc", max_length=32)
    build_tag: str = Field(default="build", max_length=32)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    metadata: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    # files uploaded to staging under this command_id (see docs/artifacts.md)
    artifacts: list[ArtifactRef] = Field(default_factory=list, max_length=10_000)

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)

    @field_validator("artifacts")
    @classmethod
    def _unique_paths(cls, value: list[ArtifactRef]) -> list[ArtifactRef]:
        seen: set[str] = set()
        for ref in value:
            if ref.path in seen:
                raise ValueError(f"artifact path {ref.path!r} appears twice")
            seen.add(ref.path)
        return value


class UpdateCard(CommandBase):
    """Change a card's tags, description, metadata or type-specific attributes, without a new
    version. Fields left as None are unchanged; `attributes` keys given replace those keys;
    `add_metrics` appends run metrics."""

    type: Literal["update_card"] = "update_card"
    uid: UUID
    tags: dict[str, str] | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    metadata: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    add_metrics: list[dict[str, Any]] | None = Field(default=None, max_length=20_000)

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _check_tags(value)


class DeleteCard(CommandBase):
    """Delete a card: it leaves a tombstone; its version number is never reused."""

    type: Literal["delete_card"] = "delete_card"
    uid: UUID


class SetAlias(CommandBase):
    """Point an alias of this registry/space/name at one version (the card `uid`): a new alias,
    or a move (the event keeps where it pointed before)."""

    type: Literal["set_alias"] = "set_alias"
    alias: str
    uid: UUID

    @field_validator("alias")
    @classmethod
    def _valid_alias(cls, value: str) -> str:
        return validate_alias(value)


class RemoveAlias(CommandBase):
    """Remove an alias of this registry/space/name."""

    type: Literal["remove_alias"] = "remove_alias"
    alias: str

    @field_validator("alias")
    @classmethod
    def _valid_alias(cls, value: str) -> str:
        return validate_alias(value)


Command = Annotated[
    RegisterCard | UpdateCard | DeleteCard | SetAlias | RemoveAlias, Field(discriminator="type")
]
AnyCommand = RegisterCard | UpdateCard | DeleteCard | SetAlias | RemoveAlias
AliasCommand = SetAlias | RemoveAlias
