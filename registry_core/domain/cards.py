"""Cards (pure): what data scientists register, and the record the registry keeps for each version.

A `Card` is the user-facing object (space, name, tags, metadata, plus type-specific fields); a
`CardRecord` is the immutable fact the sequencer produced for it (uid, version, timestamps). The
type-specific fields travel as `attributes`, so adding a card type changes no wire schema.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry_core.domain.names import validate_name

MAX_TAGS = 64
MAX_TAG_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 20_000

Json = Any


class RegistryType(StrEnum):
    DATA = "data"
    MODEL = "model"
    RUN = "run"


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags are allowed, got {len(tags)}")
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
            raise ValueError(
                f"tag keys must be 1-{MAX_TAG_LENGTH} characters, values at most as long"
            )
    return tags


class Card(BaseModel):
    """Base for every artifact card. `version` and `uid` are set by the registry on registration."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    registry_type: ClassVar[RegistryType]
    card_type: ClassVar[str] = "Card"

    space: str
    name: str
    version: str | None = None
    uid: UUID | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    metadata: dict[str, Json] = Field(default_factory=dict)
    created_at: datetime | None = None

    @field_validator("space", "name")
    @classmethod
    def _valid_name(cls, value: str, info: Any) -> str:
        return validate_name(value, field=info.field_name)

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)

    def attributes(self) -> dict[str, Json]:
        """The type-specific fields, as JSON-ready data."""
        base = set(Card.model_fields)
        return self.model_dump(mode="json", include=set(type(self).model_fields) - base)


class DataCard(Card):
    """Metadata about a dataset (the data itself is an artifact)."""

    registry_type = RegistryType.DATA
    card_type = "DataCard"

    data_type: str | None = None
    feature_map: dict[str, str] = Field(default_factory=dict)


class ModelCard(Card):
    """Metadata about a trained model, linked to the DataCard it was trained on."""

    registry_type = RegistryType.MODEL
    card_type = "ModelCard"

    datacard_uid: UUID | None = None
    framework: str | None = None


class RunCard(Card):
    """A training or evaluation run: its parameters and the cards it touched."""

    registry_type = RegistryType.RUN
    card_type = "RunCard"

    parameters: dict[str, Json] = Field(default_factory=dict)
    datacard_uids: list[UUID] = Field(default_factory=list)
    modelcard_uids: list[UUID] = Field(default_factory=list)


CARD_CLASSES: dict[str, type[Card]] = {c.card_type: c for c in (DataCard, ModelCard, RunCard)}
CARD_CLASS_FOR_REGISTRY: dict[RegistryType, type[Card]] = {
    c.registry_type: c for c in CARD_CLASSES.values()
}


class CardRecord(BaseModel):
    """The registry's record of one card version: exactly what a CardRegistered event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: UUID
    registry: RegistryType
    space: str
    name: str
    version: str
    card_type: str
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    metadata: dict[str, Json] = Field(default_factory=dict)
    attributes: dict[str, Json] = Field(default_factory=dict)
    status: Literal["active", "deleted"] = "active"
    created_at: datetime
    command_id: UUID
    actor: str | None = None

    @property
    def key(self) -> str:
        return card_key(self.registry, self.space, self.name)

    def to_card(self) -> Card:
        """Rebuild the user-facing card object of the right class."""
        cls = CARD_CLASSES.get(self.card_type, CARD_CLASS_FOR_REGISTRY[self.registry])
        return cls(
            space=self.space,
            name=self.name,
            version=self.version,
            uid=self.uid,
            tags=dict(self.tags),
            description=self.description,
            metadata=dict(self.metadata),
            created_at=self.created_at,
            **self.attributes,
        )


def card_key(registry: str, space: str, name: str) -> str:
    """The sequencing key: Kafka message key and the unit semver is assigned within."""
    return f"{registry}/{space}/{name}"
