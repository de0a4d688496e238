"""The outcome fast path: the client's long-poll answered without FastAPI's routing.

Every registration ends in one `GET /api/v1/commands/<uuid>?wait=<s>`; routing it through
FastAPI (route matching, parameter validation, the response class) was about a fifth of the
API's CPU per registration. This ASGI layer answers that exact form itself with the route's own
function (`answer_outcome`), as the same bytes, in two `send`s that the coalescing transport
(workers/api/wire.py) puts into one socket write. It sits inside the Guard, so the request is
authenticated first; anything else, or anything unusual, goes on to the route.
"""

from __future__ import annotations

import re
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from workers.api import unavailable
from workers.api.outcomes import JSON_BYTES, answer_outcome

OUTCOME_PREFIX = "/api/v1/commands/"
WAIT_RE = re.compile(rb"^wait=(\d{1,2}(?:\.\d{1,6})?)$")


def fast_outcome_args(scope: Scope) -> tuple[UUID, float] | None:
    """(command id, wait) when the request is exactly the client's long-poll (`GET
    /api/v1/commands/<canonical uuid>` with nothing or `wait=<0-60>` as the query). Anything
    else - another form of the uuid, other parameters, a wait out of range - goes to the route,
    which validates it and answers errors as documented."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(OUTCOME_PREFIX) or len(path) != len(OUTCOME_PREFIX) + 36:
        return None
    try:
        command_id = UUID(path[len(OUTCOME_PREFIX) :])
    except ValueError:
        return None
    if str(command_id) != path[len(OUTCOME_PREFIX) :]:
        return None  # upper case or another spelling: the route's business
    query: bytes = scope.get("query_string", b"")
    if not query:
        return command_id, 0.0
    m = WAIT_RE.match(query)
    if m is None:
        return None
    wait = float(m.group(1))
    return (command_id, wait) if wait <= 60 else None


class FastOutcome:
    """A plain ASGI layer: answers `fast_outcome_args` requests, passes the rest through."""

    def __init__(self, app: ASGIApp, *, wait_max: float) -> None:
        self.app = app
        self.wait_max = wait_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = fast_outcome_args(scope) if scope["type"] == "http" else None
        if fast is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        try:
            status, body = await answer_outcome(state.pool, state.waiters, *fast, self.wait_max)
        except unavailable.UNAVAILABLE as exc:  # a database restart: 503 as the route would
            await (await unavailable.answer(scope["app"], exc))(scope, receive, send)
            return
        except unavailable.ServerStopping:  # 503 as the route would
            await unavailable.STOPPING(scope, receive, send)
            return
        head = [(b"content-length", b"%d" % len(body)), (b"content-type", JSON_BYTES)]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})
