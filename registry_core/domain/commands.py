"""Commands (pure): what clients ask the sequencer to do. Wire contract, `schema_version` 1.

A command carries a client-made `command_id`; everything the sequencer derives from it (the UID,
the event ids) is a function of that id, so a redelivered command maps to the same card.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry_core.domain.cards import (
    MAX_DESCRIPTION_LENGTH,
    RegistryType,
    _check_tags,
    card_key,
)
from registry_core.domain.names import validate_name
from registry_core.domain.versioning import VersionType

COMMAND_SCHEMA_VERSION: Literal[1] = 1


class RegisterCard(BaseModel):
    """Register a new version of a card."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["register_card"] = "register_card"
    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    command_id: UUID
    issued_at: datetime
    actor: str | None = Field(default=None, max_length=256)

    registry: RegistryType
    space: str
    name: str
    card_type: str = Field(max_length=64)
    version_type: VersionType = VersionType.MINOR
    version: str | None = Field(default=None, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    metadata: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("space", "name")
    @classmethod
    def _valid_name(cls, value: str, info: Any) -> str:
        return validate_name(value, field=info.field_name)

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)

    @property
    def key(self) -> str:
        return card_key(self.registry, self.space, self.name)


Command = Annotated[RegisterCard, Field(discriminator="type")]
