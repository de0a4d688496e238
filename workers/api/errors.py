"""How the API answers failures: every error is a JSON `ErrorBody` with a status that says
whose fault it is (4xx the request's, 503 a backing service's, 500 only a bug)."""

from __future__ import annotations

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry_core.domain.errors import RegistryError, clip, summarize_validation
from workers.api import unavailable

log = structlog.get_logger("opsml.api")

STATUS_FOR_ERROR = {
    "card_not_found": 404,
    "artifact_too_large": 413,
    "unauthenticated": 401,
    "forbidden": 403,
}


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    # never echo the input back: it may be huge, or not even serialisable (NaN, lone
    # surrogates), which made the default handler answer 500
    return JSONResponse(
        {"detail": summarize_validation(exc), "error_code": "invalid_request"},
        status_code=422,
    )


async def data_error(_: Request, exc: asyncpg.DataError) -> JSONResponse:
    # Defence in depth: a value the inputs' validation let through but Postgres cannot
    # hold or compare (SQLSTATE class 22: out of range, NUL, bad encoding) is the
    # request's fault, not a server error. Logged: it names a validation to add.
    reason = clip(str(exc).encode("utf-8", "backslashreplace").decode(), 200)
    log.warning("the database refused a request value", error=reason)
    return JSONResponse(
        {"detail": f"a value of the request is out of the range the registry can store or"
                   f" compare: {reason}", "error_code": "invalid_request"},
        status_code=422,
    )  # fmt: skip


async def registry_error(_: Request, exc: RegistryError) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.message, "error_code": exc.code},
        status_code=STATUS_FOR_ERROR.get(exc.code, 422),
    )


def install(app: FastAPI) -> None:
    unavailable.install(app)  # a database restart answers 503 + Retry-After, not 500
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(asyncpg.DataError)(data_error)
    app.exception_handler(RegistryError)(registry_error)
