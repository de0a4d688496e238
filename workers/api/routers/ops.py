"""Operations and bootstrap: the health check and the configuration a client reads first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

import registry_core
from registry_core.auth import Scope, issue_grant
from registry_core.contracts.http import ClientConfig, CommandGrant, Health, KafkaConfig
from registry_core.persistence.tracking import get_tracking
from workers.api.deps import PoolDep, SettingsDep, principal

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
