"""Webhooks: endpoints registered, changed, their secret rotated, deleted; their delivery log
read and deliveries sent again (docs/events.md, "Webhooks"). Admin scope on every space, like
tokens: an endpoint receives events of every space. With access control off (an open registry
on loopback) anyone may manage them, as anyone may register cards there."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from registry_core.auth import ALL_SPACES, Scope
from registry_core.contracts.http import ErrorBody
from registry_core.domain.errors import CardNotFound, Forbidden, InvalidQuery, clip
from workers.api.deps import PoolDep, SettingsDep, principal
from workers.webhooks import store
from workers.webhooks.endpoints import (
    ENDPOINT_ID,
    MAX_OFFSET,
    DeliveryList,
    DeliveryOut,
    EndpointIn,
    EndpointList,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    Redelivered,
    WebhookError,
    checked,
)

log = structlog.get_logger("opsml.api")
router = APIRouter(tags=["webhooks"], responses={404: {"model": ErrorBody}})

EndpointId = Annotated[str, Path(pattern=ENDPOINT_ID, description="wh_ and 12 hex digits")]
Offset = Annotated[int, Path(ge=0, le=MAX_OFFSET, description="the event's offset")]

DELIVERY_STATUSES = ("pending", "delivered", "dead")


def _admin(request: Request) -> str | None:
    """The caller's name for the record; Forbidden unless admin on every space (auth on)."""
    who = principal(request)
    if who is None:
        return None
    who.require(Scope.ADMIN)
    if ALL_SPACES not in who.spaces:
        raise Forbidden(f"token {who.token_id} is limited to some spaces; webhooks need '*'")
    return who.name


async def _endpoint(pool: PoolDep, endpoint_id: str) -> store.Row:
    row = await store.get_endpoint(pool, endpoint_id)
    if row is None:
        raise CardNotFound(f"no webhook endpoint {clip(endpoint_id, 40)}")
    return row


async def _valid(fields: dict[str, object], settings: SettingsDep) -> dict[str, object]:
    try:
        return await checked(fields, allow_private=settings.webhook_allow_private)
    except WebhookError as exc:
        raise InvalidQuery(str(exc)) from None


@router.post("/api/v1/webhooks", response_model=EndpointWithSecret, status_code=201)
async def create(
    request: Request, body: EndpointIn, pool: PoolDep, settings: SettingsDep
) -> EndpointWithSecret:
    """Register an endpoint. Its signing secret is in the answer, once. It receives the events
    that occur from now on and match every filter given."""
    by = _admin(request)
    fields = await _valid(body.model_dump(), settings)
    row = await store.create_endpoint(pool, **fields, created_by=by)  # type: ignore[arg-type]
    log.info("webhook endpoint created", endpoint_id=row["endpoint_id"], url=row["url"], by=by)
    return EndpointWithSecret.of(row)


@router.get("/api/v1/webhooks", response_model=EndpointList)
async def list_all(request: Request, pool: PoolDep) -> EndpointList:
    _admin(request)
    rows, counts = await store.list_endpoints(pool), await store.open_counts(pool)
    return EndpointList(endpoints=[EndpointOut.of(r, counts) for r in rows])


@router.get("/api/v1/webhooks/{endpoint_id}", response_model=EndpointOut)
async def get_one(request: Request, endpoint_id: EndpointId, pool: PoolDep) -> EndpointOut:
    _admin(request)
    return EndpointOut.of(await _endpoint(pool, endpoint_id), await store.open_counts(pool))


@router.patch("/api/v1/webhooks/{endpoint_id}", response_model=EndpointOut)
async def change(
    request: Request,
    endpoint_id: EndpointId,
    body: EndpointPatch,
    pool: PoolDep,
    settings: SettingsDep,
) -> EndpointOut:
    """Change the URL, filters or `enabled` (a disabled endpoint's deliveries wait, in order,
    until it is enabled again). A field sent as null clears that filter."""
    by = _admin(request)
    row = await _endpoint(pool, endpoint_id)
    fields = {k: row[k] for k in EndpointIn.model_fields}
    fields.update(body.model_dump(exclude_unset=True))
    for key in ("url", "event_types", "enabled"):
        if fields[key] is None:
            fields[key] = row[key]
    updated = await store.update_endpoint(pool, endpoint_id, await _valid(fields, settings))
    if updated is None:
        raise CardNotFound(f"no webhook endpoint {clip(endpoint_id, 40)}")
    log.info("webhook endpoint changed", endpoint_id=endpoint_id, by=by)
    return EndpointOut.of(updated)


@router.post("/api/v1/webhooks/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
async def rotate(
    request: Request,
    endpoint_id: EndpointId,
    pool: PoolDep,
    settings: SettingsDep,
    grace_hours: Annotated[float | None, Query(ge=0, le=24 * 30)] = None,
) -> EndpointWithSecret:
    """A new secret (in the answer, once); the previous one keeps signing next to it for
    `grace_hours` (default OPSML_WEBHOOK_SECRET_GRACE_HOURS), so receivers can switch over."""
    by = _admin(request)
    hours = settings.webhook_secret_grace_hours if grace_hours is None else grace_hours
    row = await store.rotate_secret(pool, endpoint_id, timedelta(hours=hours))
    if row is None:
        raise CardNotFound(f"no webhook endpoint {clip(endpoint_id, 40)}")
    log.info("webhook secret rotated", endpoint_id=endpoint_id, grace_hours=hours, by=by)
    return EndpointWithSecret.of(row)


@router.delete("/api/v1/webhooks/{endpoint_id}", status_code=204)
async def delete(request: Request, endpoint_id: EndpointId, pool: PoolDep) -> Response:
    """Delete the endpoint with its deliveries and their log."""
    by = _admin(request)
    if not await store.delete_endpoint(pool, endpoint_id):
        raise CardNotFound(f"no webhook endpoint {clip(endpoint_id, 40)}")
    log.info("webhook endpoint deleted", endpoint_id=endpoint_id, by=by)
    return Response(status_code=204)


@router.get("/api/v1/webhooks/{endpoint_id}/deliveries", response_model=DeliveryList)
async def deliveries(
    request: Request,
    endpoint_id: EndpointId,
    pool: PoolDep,
    status: Annotated[str | None, Query(description="pending, delivered or dead")] = None,
    after: Annotated[int, Query(ge=-1, le=MAX_OFFSET, description="offsets above this")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """The delivery log in event order: status, attempts, the last answer and its latency."""
    _admin(request)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidQuery(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    await _endpoint(pool, endpoint_id)
    rows = await store.list_deliveries(pool, endpoint_id, status, after, limit)
    next_after = rows[-1]["event_offset"] if len(rows) == limit else None
    return DeliveryList(deliveries=[DeliveryOut.of(r) for r in rows], next_after=next_after)


@router.get("/api/v1/webhooks/{endpoint_id}/deliveries/{offset}", response_model=DeliveryOut)
async def delivery(
    request: Request, endpoint_id: EndpointId, offset: Offset, pool: PoolDep
) -> DeliveryOut:
    """One delivery with every attempt (time, status code or error, response prefix,
    latency)."""
    _admin(request)
    row = await store.get_delivery(pool, endpoint_id, offset)
    if row is None:
        raise CardNotFound(f"no delivery of event offset {offset} to {clip(endpoint_id, 40)}")
    return DeliveryOut.of(row, await store.attempts(pool, endpoint_id, offset))


@router.post(
    "/api/v1/webhooks/{endpoint_id}/deliveries/{offset}/redeliver",
    response_model=Redelivered, status_code=202,
)  # fmt: skip
async def redeliver_one(
    request: Request, endpoint_id: EndpointId, offset: Offset, pool: PoolDep
) -> Redelivered:
    """Send this delivery again (delivered or dead alike) with a fresh attempt budget; it goes
    before the endpoint's later pending deliveries."""
    by = _admin(request)
    got = await store.redeliver(pool, endpoint_id, offset)
    if not got:
        raise CardNotFound(f"no delivery of event offset {offset} to {clip(endpoint_id, 40)}")
    log.info("webhook redelivery requested", endpoint_id=endpoint_id, offsets=got, by=by)
    return Redelivered(offsets=got)


@router.post("/api/v1/webhooks/{endpoint_id}/redeliver-dead", response_model=Redelivered,
             status_code=202)  # fmt: skip
async def redeliver_dead(request: Request, endpoint_id: EndpointId, pool: PoolDep) -> Redelivered:
    """Send every dead-lettered delivery of the endpoint again, in event order."""
    by = _admin(request)
    await _endpoint(pool, endpoint_id)
    got = await store.redeliver(pool, endpoint_id, None)
    log.info("webhook redelivery requested", endpoint_id=endpoint_id, offsets=len(got), by=by)
    return Redelivered(offsets=got)
