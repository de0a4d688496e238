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
    # Handed to clients so that they never hold broker settings of their own.
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_pem: str | None = None


class CommandGrant(BaseModel):
    """Lets a client sign the commands it publishes (see registry_core.auth): `grant` travels
    with each command, `signing_key` stays with the client."""

    grant: str
    signing_key: str
    expires_at: datetime


class ClientConfig(BaseModel):
    """Everything a client needs besides OPSML_TRACKING_URI."""

    api_version: Literal["v1"] = "v1"
    server_version: str
    auth: bool = False
    grant: CommandGrant | None = None
    kafka: KafkaConfig


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=3, description="read, write, admin")
    spaces: list[str] = Field(
        default_factory=lambda: ["*"], max_length=1000, description="'*' = every space"
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    token_id: str
    name: str
    scopes: list[str]
    spaces: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenList(BaseModel):
    tokens: list[TokenOut]


class NewToken(BaseModel):
    token: str = Field(description="shown once; only its hash is stored")
    info: TokenOut


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
