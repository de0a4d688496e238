"""Answer 503 (with Retry-After), not 500, while a backing service is unreachable or the API
itself is stopping.

When Postgres restarts, requests fail with a refused connection or a connection that died under
them; the pool replaces the dead connections by itself, so the condition is temporary and the
right answer is "try again", which the client does (client/retry.py). A 500 stays a 500: that
is a bug, and is not retried.

When the API stops, uvicorn waits `timeout_graceful_shutdown` for open requests, then cancels
them and would answer each 500 - the client's long-poll is then a failed registration. The
long-poll turns that cancellation into `ServerStopping`, answered 503: the client asks again and
reaches the API that replaces this one.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = structlog.get_logger("opsml.api")

RETRY_AFTER_SECONDS = "1"
UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,  # refused / reset connections (Postgres, S3); not other OSErrors (disk)
    TimeoutError,  # pool acquire or connect timed out
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.PostgresConnectionError,  # the connection died in the middle of a query
    asyncpg.exceptions.OperatorInterventionError,  # shutting down / starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    # a pooled connection left mid-protocol by a server that went away ("cannot switch to
    # state 12; another operation is in progress"): seen when Postgres restarts under load
    asyncpg.exceptions.InternalClientError,
)


class ServerStopping(Exception):
    """The server cancelled a waiting request because it is stopping."""


STOPPING = JSONResponse(
    {"detail": "the registry's API is stopping (a restart or a deploy); retry",
     "error_code": "unavailable"},
    status_code=503,
    headers={"Retry-After": RETRY_AFTER_SECONDS},
)  # fmt: skip


async def answer(app: Any, exc: Exception) -> JSONResponse:
    """The 503 for `exc`; expires the pool's connections of `app` first."""
    log.warning("backing service unavailable", error=f"{type(exc).__name__}: {exc}")
    pool = getattr(app.state, "pool", None)
    if isinstance(pool, asyncpg.Pool):
        # the database probably restarted: every pooled connection is dead or suspect; replace
        # them on their next use instead of failing one request per stale connection
        await pool.expire_connections()
    return JSONResponse(
        {
            "detail": "the registry's database or storage is temporarily unavailable; retry",
            "error_code": "unavailable",
        },
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return await answer(request.app, exc)


async def _stopping(_request: Request, _exc: Exception) -> JSONResponse:
    return STOPPING


def install(app: FastAPI) -> None:
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _unavailable)
    app.add_exception_handler(ServerStopping, _stopping)
