"""Cards (pure): what data scientists register, and the record the registry keeps for each version.

A `Card` is the user-facing object (space, name, tags, metadata, plus type-specific fields); a
`CardRecord` is the immutable fact the sequencer produced for it (uid, version, timestamps). The
type-specific fields travel as `attributes`, so adding a card type changes no wire schema.
Cards here are data only: attaching files, saving figures, loading and downloading are the
client's (`client/cards.py` subclasses these classes under the same names).
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, field_validator

from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.bounds import Record, Storable, StoredDatetime
from registry_core.domain.errors import clip
from registry_core.domain.names import validate_name

MAX_TAGS = 64
MAX_TAG_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 20_000

Json = Any


class RegistryType(StrEnum):
    DATA = "data"
    MODEL = "model"
    RUN = "run"
    PIPELINE = "pipeline"
    PROJECT = "project"
    AUDIT = "audit"
    PROMPT = "prompt"


# Newer names accepted wherever a registry type is: OpsML 3 calls run cards experiment cards.
REGISTRY_ALIASES = {"experiment": RegistryType.RUN}


def registry_type(value: str) -> RegistryType:
    """Resolve a registry name (or alias); ValueError lists the valid ones."""
    if value in REGISTRY_ALIASES:
        return REGISTRY_ALIASES[value]
    try:
        return RegistryType(value)
    except ValueError:
        known = ", ".join([*(r.value for r in RegistryType), *REGISTRY_ALIASES])
        raise ValueError(f"unknown registry {value!r}; choose one of: {known}") from None


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags are allowed, got {len(tags)}")
    for key, value in tags.items():
        if not key:
            raise ValueError(f"a tag key is empty; tag keys are 1-{MAX_TAG_LENGTH} characters")
        if len(key) > MAX_TAG_LENGTH:
            raise ValueError(
                f"tag key {clip(key, 40)!r} is {len(key)} characters, over the limit of"
                f" {MAX_TAG_LENGTH}"
            )
        if len(value) > MAX_TAG_LENGTH:
            raise ValueError(
                f"the value of tag {clip(key, 40)!r} is {len(value)} characters, over the limit"
                f" of {MAX_TAG_LENGTH}"
            )
    return tags


class Card(Storable):
    """Base for every artifact card. `version` and `uid` are set by the registry on registration.
    Every field is checked to what the registry can store (`Storable`), on construction and on
    assignment, so a bad value fails where it is set, naming the field."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    registry_type: ClassVar[RegistryType]
    card_type: ClassVar[str] = "Card"
    # attribute -> registries its uids must point into (None: any registry)
    lineage_fields: ClassVar[dict[str, tuple[RegistryType, ...] | None]] = {}
    deletable: ClassVar[bool] = True
    once_per_name: ClassVar[bool] = False

    space: str
    name: str
    version: str | None = None
    uid: UUID | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    metadata: dict[str, Json] = Field(default_factory=dict)
    created_at: StoredDatetime | None = None
    # the files stored with this card version (set by the registry on registration)
    artifacts: list[ArtifactRef] = Field(default_factory=list)

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

    def references(self) -> list[UUID]:
        """Every card uid this card's lineage fields point at."""
        return lineage_uids(type(self), self.attributes())


def plain_json(value: Any) -> bool:
    """Only str/int/bool/None, finite floats, lists and str-keyed dicts of them (exact types):
    what a decoded JSON document holds. Other values (a UUID, an enum, a datetime, a str
    subclass, NaN) are not. (Written out flat: it runs for every registration.)"""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or not _plain_item(v):
                return False
        return True
    if t is list:
        for v in value:
            if not _plain_item(v):
                return False
        return True
    return _plain_item(value)


def _plain_item(v: Any) -> bool:
    t = type(v)
    if t is str or t is int or t is bool or v is None:
        return True
    if t is dict or t is list:
        return not v or plain_json(v)
    return t is float and math.isfinite(v)


def lineage_uids(cls: type[Card], attributes: dict[str, Json]) -> list[UUID]:
    found: list[UUID] = []
    for field_name in cls.lineage_fields:
        value = attributes.get(field_name)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                found.append(item if isinstance(item, UUID) else UUID(str(item)))
    return found


class DataSplit(Storable):
    """A named part of a dataset: rows where `column == value`, or rows [start, stop)."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=64)
    column: str | None = None
    value: Json = None
    start: int | None = None
    stop: int | None = None


class DataCard(Card):
    """Metadata about a dataset (the data itself is an artifact)."""

    registry_type = RegistryType.DATA
    card_type = "DataCard"

    # the data itself (pandas / polars / pyarrow table, numpy array): stored as an artifact
    data: Any = Field(default=None, exclude=True)
    data_type: str | None = None
    row_count: int | None = None
    feature_map: dict[str, str] = Field(default_factory=dict)
    data_splits: list[DataSplit] = Field(default_factory=list)


class ModelCard(Card):
    """Metadata about a trained model, linked to the DataCard it was trained on."""

    registry_type = RegistryType.MODEL
    card_type = "ModelCard"
    lineage_fields = {"datacard_uid": (RegistryType.DATA,)}

    datacard_uid: UUID | None = None
    # the model object (scikit-learn estimator/pipeline, torch.nn.Module): stored as artifacts
    model: Any = Field(default=None, exclude=True)
    sample_data: Any = Field(default=None, exclude=True)
    framework: str | None = None
    framework_versions: dict[str, str] = Field(default_factory=dict)
    model_format: str | None = None
    # torch: the importable class ("package.module:Class") and its constructor arguments
    model_class: str | None = None
    model_init_kwargs: dict[str, Json] = Field(default_factory=dict)
    sample_data_type: str | None = None
    # the model's inputs, learnt from sample_data: column (or "dtype"/"shape") -> type
    feature_map: dict[str, str] = Field(default_factory=dict)
    # options read at registration: ONNX (the `onnx` extra) and, for torch with sample_data, a
    # class-free torch.export program (so serving needs no training code)
    export_onnx: bool = False
    export_torch: bool = True
    # exports stored with the model: kind ("onnx", "torch.export") -> artifact path
    exports: dict[str, str] = Field(default_factory=dict)


class Metric(Storable):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    value: float
    step: int | None = Field(default=None, ge=0, le=2**31 - 1)  # run_metrics.step is an integer
    timestamp: StoredDatetime | None = None


ParamValue = float | int | str | bool | None


class RunCard(Card):
    """A training or evaluation run: parameters, metrics by step, and the cards it touched."""

    registry_type = RegistryType.RUN
    card_type = "RunCard"
    lineage_fields = {
        "datacard_uids": (RegistryType.DATA,),
        "modelcard_uids": (RegistryType.MODEL,),
    }

    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    metrics: list[Metric] = Field(default_factory=list, max_length=20_000)
    datacard_uids: list[UUID] = Field(default_factory=list)
    modelcard_uids: list[UUID] = Field(default_factory=list)

    def log_metric(
        self, name: str, value: float, step: int | None = None, timestamp: datetime | None = None
    ) -> None:
        self.metrics = [
            *self.metrics,
            Metric(name=name, value=value, step=step, timestamp=timestamp),
        ]

    def log_parameter(self, name: str, value: ParamValue) -> None:
        self.parameters = {**self.parameters, name: value}


class ExperimentCard(RunCard):
    """The newer name of a RunCard (OpsML 3); lives in the run registry."""

    card_type = "ExperimentCard"


class PipelineCard(Card):
    """A pipeline and the data, model and run cards it produced. Cannot be deleted."""

    registry_type = RegistryType.PIPELINE
    card_type = "PipelineCard"
    deletable = False
    lineage_fields = {
        "datacard_uids": (RegistryType.DATA,),
        "modelcard_uids": (RegistryType.MODEL,),
        "runcard_uids": (RegistryType.RUN,),
    }

    pipeline_code_uri: str | None = Field(default=None, max_length=2048)
    datacard_uids: list[UUID] = Field(default_factory=list)
    modelcard_uids: list[UUID] = Field(default_factory=list)
    runcard_uids: list[UUID] = Field(default_factory=list)


class ProjectCard(Card):
    """A project: registered once per space/name, never deleted."""

    registry_type = RegistryType.PROJECT
    card_type = "ProjectCard"
    deletable = False
    once_per_name = True


class AuditQuestion(Storable):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=2000)
    response: str | None = Field(default=None, max_length=20_000)


class AuditComment(Storable):
    model_config = ConfigDict(extra="forbid")

    author: str = Field(max_length=256)
    comment: str = Field(max_length=20_000)
    timestamp: StoredDatetime | None = None


class AuditCard(Card):
    """A review of other cards: questionnaire, approval and comments."""

    registry_type = RegistryType.AUDIT
    card_type = "AuditCard"
    lineage_fields = {"card_uids": None}  # any registry

    questionnaire: dict[str, AuditQuestion] = Field(default_factory=dict)
    approved: bool = False
    comments: list[AuditComment] = Field(default_factory=list)
    card_uids: list[UUID] = Field(default_factory=list)


class PromptCard(Card):
    """A prompt template with its model/provider settings and parameters."""

    registry_type = RegistryType.PROMPT
    card_type = "PromptCard"

    prompt: str = Field(default="", max_length=200_000)
    system_prompt: str | None = Field(default=None, max_length=200_000)
    model: str | None = Field(default=None, max_length=256)
    provider: str | None = Field(default=None, max_length=256)
    parameters: dict[str, ParamValue] = Field(default_factory=dict)


CARD_CLASSES: dict[str, type[Card]] = {
    c.card_type: c
    for c in (
        DataCard, ModelCard, RunCard, ExperimentCard, PipelineCard, ProjectCard, AuditCard,
        PromptCard,
    )
}  # fmt: skip
# The primary card class of each registry (the one a registry builds by default).
CARD_CLASS_FOR_REGISTRY: dict[RegistryType, type[Card]] = {
    c.registry_type: c for c in CARD_CLASSES.values() if c is not ExperimentCard
}


def card_types_for(registry: RegistryType) -> tuple[str, ...]:
    return tuple(t for t, c in CARD_CLASSES.items() if c.registry_type is registry)


# Built by the sequencer from a checked command and a checked card, and read back as stored
# (`Record`: not walked again).
class CardRecord(Record):
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
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    status: Literal["active", "deleted"] = "active"
    created_at: StoredDatetime
    updated_at: StoredDatetime | None = None
    command_id: UUID
    actor: str | None = None

    @property
    def key(self) -> str:
        return card_key(self.registry, self.space, self.name)

    def to_card(self, cls: type[Card] | None = None) -> Card:
        """Rebuild the user-facing card object: of the record's class, or of `cls` (the client
        passes its subclass of that class)."""
        if cls is None:
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
            artifacts=list(self.artifacts),
            **self.attributes,
        )


def card_key(registry: str, space: str, name: str) -> str:
    """The sequencing key: Kafka message key and the unit semver is assigned within."""
    return f"{registry}/{space}/{name}"
