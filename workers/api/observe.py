"""The API's outermost layer: a request id on every request, and the HTTP metrics.

Every request gets an id: the caller's `X-Request-ID` when it is a sane token (a proxy's or a
client's), else a fresh one. It is echoed in the response's `X-Request-ID` header and bound into
the log context (structlog contextvars), together with the `command_id` a command's long-poll or
staging upload names, so the API's lines about a command - uvicorn's access line included, in
JSON mode - carry both, and the worker's lines carry the same `command_id`.

Metrics (registry_core/metrics.py): requests by route template, method and status with a latency
histogram, artifact bytes staged (in) and downloaded (out), and the long-polls open right now.
A plain ASGI layer like the guard (workers/api/guard.py): one counter, one histogram update and
one header per request, so the outcome fast path stays fast.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry_core import metrics

HEADER = b"x-request-id"
VALID_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")
COMMANDS = "/api/v1/commands/"
STAGING = "/api/v1/staging/"
CARDS = "/api/v1/cards/"
UUID_LEN = 36

_bind = structlog.contextvars.bind_contextvars
# A made id is this process's random prefix and a counter: unique across processes and
# restarts like a uuid4, without a getrandom() system call per request (measured ~1-8 us).
_PREFIX = os.urandom(6).hex().encode()
_COUNTER = itertools.count(1)


def new_request_id() -> bytes:
    return b"%s%08x" % (_PREFIX, next(_COUNTER))


def request_id(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value if VALID_ID.match(value) else new_request_id()
    return new_request_id()


# (route, method, status) -> the counter's and the histogram's children: `labels()` takes a
# lock and builds its key on every call; the set of keys is small (route templates).
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _series(route: str, method: str, status: int) -> tuple[Any, Any]:
    key = (route, method, status)
    found = _SERIES.get(key)
    if found is None:
        found = _SERIES[key] = (
            metrics.HTTP_REQUESTS.labels(route, method, str(status)),
            metrics.HTTP_LATENCY.labels(route, method),
        )
    return found


def command_id_of(path: str) -> str | None:
    """The command a request is about: its outcome (`/api/v1/commands/<id>`) or a staged file
    (`/api/v1/staging/<id>/<path>`)."""
    for prefix in (COMMANDS, STAGING):
        if path.startswith(prefix):
            candidate = path[len(prefix) : len(prefix) + UUID_LEN]
            if len(candidate) == UUID_LEN and candidate.count("-") == 4:
                return candidate
    return None


def route_of(scope: Scope, status: int) -> str:
    """The route template (bounded label values): FastAPI's matched route, else the template
    of the requests answered before routing (the outcome fast path, the guard's refusals)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is not None:
        return str(template)
    path: str = scope.get("path", "")
    if path.startswith(COMMANDS):
        return "/api/v1/commands/{command_id}"
    if path.startswith(STAGING):
        return "/api/v1/staging/{command_id}/{path:path}"
    if path.startswith(CARDS):
        return "/api/v1/cards/..."
    return "unmatched" if status == 404 else "other"


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        cid = command_id_of(path)
        if cid is None:
            _bind(request_id=rid.decode())
        else:
            _bind(request_id=rid.decode(), command_id=cid)
        status = 500
        downloading = method == "GET" and path.startswith(CARDS) and "/artifacts/" in path
        sent_bytes = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid)]
            elif downloading and message["type"] == "http.response.body" and status < 300:
                sent_bytes += len(message.get("body", b""))
            await send(message)

        inner_receive = receive
        if method == "PUT" and path.startswith(STAGING):

            async def inner_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    metrics.ARTIFACT_BYTES.labels("in").inc(len(message.get("body", b"")))
                return message

        long_poll = (
            method == "GET"
            and path.startswith(COMMANDS)
            and b"wait=" in scope.get("query_string", b"")
        )
        if long_poll:
            metrics.OPEN_LONG_POLLS.inc()
        try:
            await self.app(scope, inner_receive, send_with_id)
        finally:
            if long_poll:
                metrics.OPEN_LONG_POLLS.dec()
            if sent_bytes:
                metrics.ARTIFACT_BYTES.labels("out").inc(sent_bytes)
            requests, latency = _series(route_of(scope, status), method, status)
            requests.inc()
            latency.observe(time.perf_counter() - started)
