"""HTTP response models of the read API (shared with the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from registry_core.domain.cards import CardRecord


class KafkaConfig(BaseModel):
    bootstrap_servers: str
    commands_topic: str
    events_topic: str
    security_protocol: str = "PLAINTEXT"
    max_message_bytes: int


class ClientConfig(BaseModel):
    """Everything a client needs besides OPSML_TRACKING_URI."""

    api_version: Literal["v1"] = "v1"
    server_version: str
    kafka: KafkaConfig


class CardOut(CardRecord):
    event_offset: int


class CardList(BaseModel):
    cards: list[CardOut]
    next_cursor: str | None = None


class LineageLink(BaseModel):
    field: str
    card: CardOut


class Lineage(BaseModel):
    """`upstream`: the cards this card points at; `downstream`: the cards pointing at it."""

    uid: UUID
    upstream: list[LineageLink]
    downstream: list[LineageLink]


class MetricPoint(BaseModel):
    step: int | None
    value: float
    timestamp: datetime | None = None


class RunMetrics(BaseModel):
    """metrics[uid][name] = points in logging order (by step)."""

    metrics: dict[UUID, dict[str, list[MetricPoint]]]
    parameters: dict[UUID, dict[str, object]]


class CommandOutcome(BaseModel):
    command_id: UUID
    status: Literal["pending", "registered", "updated", "deleted", "rejected"]
    uid: UUID | None = None
    version: str | None = None
    error_code: str | None = None
    reason: str | None = None
    event_offset: int | None = None
    decided_at: datetime | None = None
    card: CardOut | None = None


MAX_BULK_OUTCOMES = 10_000


class OutcomesQuery(BaseModel):
    command_ids: list[UUID] = Field(max_length=MAX_BULK_OUTCOMES)


class OutcomeList(BaseModel):
    """Outcomes of the commands that have one; commands not decided yet are absent."""

    outcomes: list[CommandOutcome]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    sequencer: dict[str, int | None]


class ErrorBody(BaseModel):
    detail: str
    error_code: str | None = None


class StagedFile(BaseModel):
    path: str
    sha256: str
    size: int


class KnownArtifactsQuery(BaseModel):
    registry: str = Field(max_length=32)
    space: str = Field(max_length=64)
    sha256: list[str] = Field(max_length=10_000)


class KnownArtifacts(BaseModel):
    """The contents (by sha256) the registry already stores in that space: don't upload them."""

    known: list[str]
