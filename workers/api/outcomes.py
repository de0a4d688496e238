"""Answering a command's outcome: the wait on the LISTEN/NOTIFY waiters and the response bytes.

One function serves both the documented route and the fast path (workers/api/fast_outcome.py),
so the two cannot drift apart. The bodies are written with orjson straight from the rows of our
own projection: the same bytes `CommandOutcome(**row).model_dump_json()` gives, without
validating a model per answer (tests/unit/test_outcome_json.py holds them to that).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from registry_core.persistence import read
from workers.api.unavailable import ServerStopping
from workers.api.waiters import OutcomeWaiters

JSON = "application/json"
JSON_BYTES = JSON.encode()
_ORJSON_OPTS = orjson.OPT_UTC_Z  # "...Z" for UTC, as pydantic writes datetimes


def _stamp(value: Any) -> Any:
    """A timestamp from a jsonb card ("2026-01-02T03:04:05.12+00:00") as the response model
    writes it (parsed and re-written: "2026-01-02T03:04:05.120000Z")."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _artifact(a: dict[str, Any]) -> dict[str, Any]:
    return {"path": a["path"], "sha256": a["sha256"], "size": a["size"],
            "media_type": a.get("media_type")}  # fmt: skip


def _card_body(c: dict[str, Any]) -> dict[str, Any]:
    """A card from `get_outcome_with_card` (jsonb, keys in jsonb order, timestamps as text) in
    the shape and field order of `CardOut`."""
    return {
        "uid": c["uid"],
        "registry": c["registry"],
        "space": c["space"],
        "name": c["name"],
        "version": c["version"],
        "card_type": c["card_type"],
        "tags": c.get("tags") or {},
        "description": c.get("description"),
        "metadata": c.get("metadata") or {},
        "attributes": c.get("attributes") or {},
        "artifacts": [_artifact(a) for a in c.get("artifacts") or ()],
        "status": c.get("status", "active"),
        "created_at": _stamp(c["created_at"]),
        "updated_at": _stamp(c.get("updated_at")),
        "command_id": c["command_id"],
        "actor": c.get("actor"),
        "event_offset": c["event_offset"],
    }


def _outcome_body(row: dict[str, Any]) -> dict[str, Any]:
    """An outcome row in the shape and field order of `CommandOutcome` (no validation: the row
    comes from our own projection)."""
    card = row.get("card")
    return {
        "command_id": row["command_id"],
        "status": row["status"],
        "uid": row["uid"],
        "version": row["version"],
        "error_code": row["error_code"],
        "reason": row["reason"],
        "event_offset": row["event_offset"],
        "decided_at": row["decided_at"],
        "card": _card_body(card) if card is not None else None,
    }


def pending_json(command_id: UUID) -> bytes:
    """`CommandOutcome(command_id=..., status="pending")`, as JSON."""
    return orjson.dumps(
        {"command_id": command_id, "status": "pending", "uid": None, "version": None,
         "error_code": None, "reason": None, "event_offset": None, "decided_at": None,
         "card": None}
    )  # fmt: skip


def outcome_json(row: dict[str, Any]) -> bytes:
    """The bytes `CommandOutcome(**row).model_dump_json()` would give, without the model."""
    return orjson.dumps(_outcome_body(row), default=str, option=_ORJSON_OPTS)


def outcomes_json(rows: list[dict[str, Any]]) -> bytes:
    """The bytes of `OutcomeList(outcomes=[CommandOutcome(**r) for r in rows])`."""
    return orjson.dumps(
        {"outcomes": [_outcome_body(r) for r in rows]}, default=str, option=_ORJSON_OPTS
    )


def _expire(woken: asyncio.Future[Any]) -> None:
    if not woken.done():
        woken.set_result(None)


async def answer_outcome(
    pool: asyncpg.Pool, waiters: OutcomeWaiters, command_id: UUID, wait: float, wait_max: float
) -> tuple[int, bytes]:
    """(status, JSON body) of `GET /api/v1/commands/{command_id}?wait=...`: 200 with the
    outcome, or 202 with a pending one when `wait` ran out first. ServerStopping when the
    server cancels the wait."""
    wait = min(wait, wait_max)
    with waiters.expect(str(command_id)) as woken:
        row = await read.get_outcome_with_card(pool, command_id)
        if row is None and wait > 0:
            # The waiter hands over the row it read after the NOTIFY (committed by then);
            # woken without one (timeout, listener lost), read it here.
            timer = asyncio.get_running_loop().call_later(wait, _expire, woken)
            try:
                row = await woken
            except asyncio.CancelledError:
                # only the server cancels a request's task: it is stopping (uvicorn's
                # graceful-shutdown time ran out), so this wait is answered "retry"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                raise ServerStopping from None
            finally:
                timer.cancel()
            if row is None:
                row = await read.get_outcome_with_card(pool, command_id)
    if row is None:
        return 202, pending_json(command_id)
    return 200, outcome_json(row)
