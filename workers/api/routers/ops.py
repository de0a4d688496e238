"""Operations and bootstrap: health (`/healthz`), the probes (`/livez`, `/readyz`), Prometheus
`/metrics` and the configuration a client reads first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

import registry_core
from registry_core import metrics
from registry_core.auth import Scope, issue_grant
from registry_core.contracts.http import ClientConfig, CommandGrant, Health, KafkaConfig
from registry_core.persistence import db
from registry_core.persistence.tracking import get_tracking
from workers.api.deps import PoolDep, SettingsDep, principal
from workers.sequencer.health import KafkaProbe

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["ops"])
async def healthz(pool: PoolDep, s: SettingsDep) -> Any:
    try:
        async with pool.acquire() as conn:
            tracking = await get_tracking(conn, s.worker_name)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        body = Health(status="degraded", database=False, sequencer={})
        return JSONResponse(body.model_dump(), status_code=503)
    seq = {
        "command_offset": tracking.command_offset if tracking else None,
        "event_offset": tracking.event_offset if tracking else None,
        "epoch": tracking.claimed_epoch if tracking else None,
    }
    return Health(status="ok", database=True, sequencer=seq)


PROBE_TIMEOUT_S = 2.0


@router.get("/livez", tags=["ops"])
async def livez() -> dict[str, str]:
    """Liveness: the process answers (no dependency is checked; a restart would not fix one)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request, pool: PoolDep, s: SettingsDep) -> JSONResponse:
    """Readiness: Postgres answers, the schema's migrations are at this build's head, and the
    Kafka cluster's metadata (with both topics) can be read. 503 with the failing checks."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            async with pool.acquire() as conn:
                applied = {r["version"] for r in await conn.fetch(db.Q["applied_migrations"])}
        head = max(v for v, _, _ in db.migration_files())
        missing = sorted({v for v, _, _ in db.migration_files()} - applied)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not missing else f"pending: {missing} (head {head})"
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["kafka"] = await _kafka_check(request, s)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )


async def _kafka_check(request: Request, s: Any) -> str:
    """The cluster's metadata through the API's one probe client (cached a few seconds)."""
    state = request.app.state
    probe: KafkaProbe | None = getattr(state, "kafka_probe", None)
    if probe is None:
        probe = state.kafka_probe = KafkaProbe(
            s.kafka_bootstrap_servers, {s.commands_topic, s.events_topic}, s.kafka_client_kwargs()
        )
    return await probe.check()


@router.get("/metrics", tags=["ops"], include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Prometheus text format: requests, latency, artifact bytes, open long-polls."""
    return Response(metrics.render(metrics.API), media_type=metrics.CONTENT_TYPE)


@router.get("/api/v1/config", response_model=ClientConfig, tags=["client"])
async def config(request: Request, s: SettingsDep) -> ClientConfig:
    """What a client needs besides OPSML_TRACKING_URI: where and how to publish commands,
    and (with access control on, for a token with the write scope) a grant to sign them."""
    grant = None
    who = principal(request)
    key = s.grant_key_bytes()
    if who is not None and key is not None and who.has(Scope.WRITE):
        g = issue_grant(key, who, datetime.now(UTC))
        grant = CommandGrant(grant=g.grant, signing_key=g.signing_key, expires_at=g.expires_at)
    password = s.kafka_client_sasl_password
    return ClientConfig(
        server_version=registry_core.__version__,
        auth=request.app.state.auth_on,
        grant=grant,
        kafka=KafkaConfig(
            bootstrap_servers=s.kafka_client_bootstrap_servers or s.kafka_bootstrap_servers,
            commands_topic=s.commands_topic,
            events_topic=s.events_topic,
            security_protocol=s.kafka_client_security_protocol or s.kafka_security_protocol,
            max_message_bytes=s.max_command_bytes,
            sasl_mechanism=(s.kafka_client_sasl_mechanism or s.kafka_sasl_mechanism)
            if s.kafka_client_sasl_username
            else None,
            sasl_username=s.kafka_client_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_ca_pem=request.app.state.client_ca,
        ),
    )
