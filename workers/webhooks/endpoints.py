"""Webhooks: what an endpoint registration may say (shared by the API and `opsml webhooks`), and
the shapes the API answers with. Secrets are shown once, when created or rotated; never listed."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, get_args

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from registry_core.domain.bounds import Storable
from registry_core.domain.events import Event
from workers.webhooks import ssrf
from workers.webhooks.policy import MARKER

PATTERN = re.compile(r"[a-z0-9*?\[\]!-]{1,64}")  # a name (docs/architecture.md) or a glob of one
ENDPOINT_ID = r"^wh_[0-9a-f]{12}$"
MAX_OFFSET = 2**63 - 1
Counts = dict[tuple[str, str], int]  # (endpoint_id, status): deliveries


def event_types() -> list[str]:
    """Every event type of the contract a webhook can receive (the internal marker aside)."""
    union = get_args(Event)[0]
    names = [m.model_fields["type"].default for m in get_args(union)]
    return sorted(n for n in names if n != MARKER)


class WebhookError(ValueError):
    """The registration is refused; the message says what to change."""


class EndpointIn(Storable):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=ssrf.MAX_URL_CHARS)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(default_factory=list, max_length=50)
    registry: str | None = None
    space: str | None = None
    name: str | None = None
    alias: str | None = None
    enabled: bool = True


class EndpointPatch(Storable):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=ssrf.MAX_URL_CHARS)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, max_length=50)
    registry: str | None = None
    space: str | None = None
    name: str | None = None
    alias: str | None = None
    enabled: bool | None = None


class EndpointOut(BaseModel):
    endpoint_id: str
    url: str
    description: str | None
    event_types: list[str]
    registry: str | None
    space: str | None
    name: str | None
    alias: str | None
    enabled: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None
    pending: int | None = None  # deliveries waiting (listing and reading one endpoint)
    dead: int | None = None  # dead-lettered deliveries, until redelivered

    @classmethod
    def of(
        cls, row: asyncpg.Record, counts: dict[tuple[str, str], int] | None = None
    ) -> EndpointOut:
        out = cls(**{k: row[k] for k in cls.model_fields if k not in ("pending", "dead")})
        if counts is not None:
            out.pending = counts.get((out.endpoint_id, "pending"), 0)
            out.dead = counts.get((out.endpoint_id, "dead"), 0)
        return out


class EndpointWithSecret(EndpointOut):
    secret: str  # whsec_...: shown once; verify deliveries with it

    @classmethod
    def of(
        cls, row: asyncpg.Record, counts: dict[tuple[str, str], int] | None = None
    ) -> EndpointWithSecret:
        fields = (k for k in cls.model_fields if k not in ("pending", "dead"))
        return cls(**{k: row[k] for k in fields})


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class AttemptOut(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    response: str | None
    latency_ms: float


class DeliveryOut(BaseModel):
    endpoint_id: str
    event_offset: int
    event_id: str
    event_type: str
    status: str  # pending | delivered | dead
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    last_response: str | None
    last_latency_ms: float | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut] | None = None

    @classmethod
    def of(cls, row: asyncpg.Record, log: list[asyncpg.Record] | None = None) -> DeliveryOut:
        data: dict[str, Any] = {k: row[k] for k in cls.model_fields if k != "attempt_log"}
        data["event_id"] = str(data["event_id"])
        if log is not None:
            data["attempt_log"] = [AttemptOut(**dict(a)) for a in log]
        return cls(**data)


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_after: int | None  # pass as `after` for the next page; None: no more


class Redelivered(BaseModel):
    offsets: list[int]


async def checked(fields: dict[str, Any], *, allow_private: bool) -> dict[str, Any]:
    """`fields` (an EndpointIn's, or a stored row merged with a patch) checked: the URL by the
    SSRF guard, the event types against the contract, the patterns against the name alphabet."""
    try:
        await ssrf.check(fields["url"], allow_private=allow_private)
    except ssrf.UnsafeEndpoint as exc:
        raise WebhookError(f"url: {exc}") from None
    known = event_types()
    for t in fields["event_types"]:
        if t not in known:
            raise WebhookError(f"event_types: unknown type {t!r}; known: {', '.join(known)}")
    for key in ("registry", "space", "name", "alias"):
        value = fields.get(key)
        if value is not None and not PATTERN.fullmatch(value):
            raise WebhookError(
                f"{key}: {value!r} is not a name or a glob pattern of one (lowercase letters,"
                " digits, '-', and the wildcards * ? [ ])"
            )
    return fields
