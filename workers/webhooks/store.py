"""Webhooks: the Postgres side (`opsml_webhooks`, migration 0008) - endpoints, the delivery
process's cursor, deliveries and their attempts. Named queries only (queries/webhooks.sql)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from registry_core.persistence.db import Q
from workers.webhooks.signing import new_secret

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
Row: TypeAlias = asyncpg.Record

CURSOR = "webhooks"


def new_endpoint_id() -> str:
    return "wh_" + secrets.token_hex(6)


async def create_endpoint(
    conn: Conn, *, url: str, description: str | None, event_types: Sequence[str],
    registry: str | None, space: str | None, name: str | None, alias: str | None,
    enabled: bool, created_by: str | None,
) -> Row:  # fmt: skip
    row = await conn.fetchrow(
        Q["wh_create_endpoint"], new_endpoint_id(), url, description, list(event_types),
        registry, space, name, alias, new_secret(), enabled, created_by,
    )  # fmt: skip
    assert row is not None
    return row


async def list_endpoints(conn: Conn) -> list[Row]:
    return list(await conn.fetch(Q["wh_list_endpoints"]))


async def get_endpoint(conn: Conn, endpoint_id: str) -> Row | None:
    return await conn.fetchrow(Q["wh_get_endpoint"], endpoint_id)  # type: ignore[no-any-return]


async def update_endpoint(conn: Conn, endpoint_id: str, fields: dict[str, Any]) -> Row | None:
    return await conn.fetchrow(  # type: ignore[no-any-return]
        Q["wh_update_endpoint"], endpoint_id, fields["url"], fields["description"],
        list(fields["event_types"]), fields["registry"], fields["space"], fields["name"],
        fields["alias"], fields["enabled"],
    )  # fmt: skip


async def rotate_secret(conn: Conn, endpoint_id: str, grace: timedelta) -> Row | None:
    return await conn.fetchrow(  # type: ignore[no-any-return]
        Q["wh_rotate_secret"], endpoint_id, new_secret(), grace
    )


async def delete_endpoint(conn: Conn, endpoint_id: str) -> bool:
    return bool(await conn.execute(Q["wh_delete_endpoint"], endpoint_id) != "DELETE 0")


def signing_secrets(row: Row, now: datetime) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    out = [row["secret"]]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret"] and expires is not None and expires > now:
        out.append(row["previous_secret"])
    return out


async def cursor(conn: Conn) -> tuple[int, int] | None:
    row = await conn.fetchrow(Q["wh_cursor"], CURSOR)
    return None if row is None else (row["position"], row["max_epoch"])


async def fan_out(
    conn: asyncpg.Connection,
    match: Callable[[list[Row]], list[tuple[str, int, UUID, str, str]]],
    position: int,
    max_epoch: int,
) -> list[tuple[str, int, UUID, str, str]]:
    """In one transaction: read the endpoints (under a share lock, so none registered
    meanwhile is missed), store the deliveries `match` makes of them (endpoint_id, offset,
    event_id, type, body) and the new cursor. The cursor never passes an event whose deliveries
    are not stored."""
    async with conn.transaction():
        await conn.execute(Q["wh_lock_endpoints"])
        deliveries = match(list(await conn.fetch(Q["wh_list_endpoints"])))
        if deliveries:
            await conn.executemany(Q["wh_insert_delivery"], deliveries)
        await conn.execute(Q["wh_save_cursor"], CURSOR, position, max_epoch)
    return deliveries


async def next_deliveries(conn: Conn, endpoint_id: str, limit: int) -> list[Row]:
    return list(await conn.fetch(Q["wh_next_deliveries"], endpoint_id, limit))


async def lanes_with_work(conn: Conn) -> set[str]:
    return {r["endpoint_id"] for r in await conn.fetch(Q["wh_lanes_with_work"])}


async def settle(
    conn: Conn, endpoint_id: str, offset: int, *, attempt: int, status: str, delay_s: float,
    code: int | None, error: str | None, response: str | None, latency_ms: float,
) -> None:  # fmt: skip
    """Record one attempt in the log and the delivery's new state, in one statement."""
    await conn.execute(
        Q["wh_settle_delivery"], endpoint_id, offset, status, delay_s, attempt, code, error,
        response, latency_ms,
    )  # fmt: skip


async def list_deliveries(
    conn: Conn, endpoint_id: str, status: str | None, after: int, limit: int
) -> list[Row]:
    return list(await conn.fetch(Q["wh_list_deliveries"], endpoint_id, status, after, limit))


async def get_delivery(conn: Conn, endpoint_id: str, offset: int) -> Row | None:
    return await conn.fetchrow(Q["wh_get_delivery"], endpoint_id, offset)  # type: ignore[no-any-return]


async def attempts(conn: Conn, endpoint_id: str, offset: int) -> list[Row]:
    return list(await conn.fetch(Q["wh_delivery_attempts"], endpoint_id, offset))


async def redeliver(conn: Conn, endpoint_id: str, offset: int | None) -> list[int]:
    """Mark one delivery (or, with offset None, every dead one) for sending again now."""
    if offset is None:
        rows = await conn.fetch(Q["wh_redeliver_dead"], endpoint_id)
    else:
        rows = await conn.fetch(Q["wh_redeliver"], endpoint_id, offset)
    return sorted(r["event_offset"] for r in rows)


async def prune_delivered(conn: Conn, older_than: timedelta) -> int:
    done = await conn.execute(Q["wh_prune_delivered"], older_than)
    return int(done.split()[-1])


async def open_counts(conn: Conn) -> dict[tuple[str, str], int]:
    """{(endpoint_id, status): n} of the pending and dead deliveries."""
    rows = await conn.fetch(Q["wh_delivery_counts"])
    return {(r["endpoint_id"], r["status"]): r["n"] for r in rows}
