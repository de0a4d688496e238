"""HTTP response models of the read API (shared with the client)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from registry_core.domain.cards import CardRecord


def storable_text(value: str) -> str:
    """JSON can spell what Postgres text cannot hold: NUL (`\\u0000`) and lone surrogates
    (`\\ud800`); refused at the boundary instead of failing in the query (a 500)."""
    if "\x00" in value:
        raise ValueError("NUL characters (U+0000) are not allowed")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "lone surrogates (U+D800-U+DFFF) are not allowed: send valid Unicode text"
            ) from None
    return value


def storable_datetime(value: datetime) -> datetime:
    """The read API's datetimes are compared in UTC (timestamptz): an offset that moves a value
    across the calendar's ends (`0001-01-01T00:00:00+14:00` is in year 0 in UTC) cannot be sent
    to Postgres; refused with the parameter named instead of a 500. The conversion is asyncpg's
    (a value without an offset is in the server's local time)."""
    try:
        value.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(
            "out of range: in UTC the date must be between 0001-01-01 and 9999-12-31"
        ) from None
    return value


Text = Annotated[str, AfterValidator(storable_text)]
"""A string that Postgres text can hold (for request bodies; query strings and paths cannot
carry lone surrogates, and the API refuses NUL in them before routing)."""
QueryDatetime = Annotated[
    datetime,
    AfterValidator(storable_datetime),
    # What the parameter accepts (pydantic's datetime parsing), so that the document and the API
    # agree: schemathesis's negative tests found `max_date=0` answered 200 against the generated
    # `format: date-time`.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
                {"type": "number"},
            ],
            "description": "an ISO 8601 date-time (without an offset: the server's local time)"
            " or date, or Unix time (seconds; milliseconds above 2e10); in UTC within the years"
            " 1-9999",
        }
    ),
]
"""A datetime query parameter that stays inside the calendar once converted to UTC."""


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
    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Text] = Field(min_length=1, max_length=3, description="read, write, admin")
    spaces: list[Text] = Field(
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


class AliasedCard(CardOut):
    """A card as reads return it: with the aliases pointing at it (now, or as of the moment
    asked about). Outcomes carry a plain CardOut."""

    aliases: list[str] = Field(default_factory=list)


class CardList(BaseModel):
    cards: list[AliasedCard]
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
    status: Literal[
        "pending", "registered", "updated", "deleted", "rejected", "alias_set", "alias_removed"
    ]
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
    registry: Text = Field(max_length=32)
    space: Text = Field(max_length=64)
    sha256: list[Text] = Field(max_length=10_000)


class KnownArtifacts(BaseModel):
    """The contents (by sha256) the registry already stores in that space: don't upload them."""

    known: list[str]
