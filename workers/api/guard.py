"""The guard: the API's outermost check on every request, before any route sees it.

Postgres text cannot hold U+0000, so a NUL in a path or query is refused here once instead of in
every handler; with access control on, the bearer token is authenticated and the route's scope
checked, and the principal handed on in `request.state.principal`. A plain ASGI middleware (not
BaseHTTPMiddleware, whose per-request task and streams cost ~20% of the API's CPU): it answers
refusals itself and otherwise passes the request through untouched.
"""

from __future__ import annotations

import base64

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from registry_core.auth import Scope as Permission
from registry_core.domain.errors import RegistryError, Unauthenticated
from registry_core.persistence.tokens import TokenCache
from workers.api import unavailable

# Open without a token: health, the probes and Prometheus metrics (docs/operations.md: keep
# /metrics off the public ingress), the OpenAPI document and its viewers (create_app adds the
# viewers' asset files).
OPEN_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
     "/openapi.json"}
)  # fmt: skip

NUL_REFUSED = JSONResponse(
    {"detail": "NUL characters (U+0000) are not allowed in paths or queries",
     "error_code": "invalid_request"},
    status_code=422,
)  # fmt: skip


def bearer(header: str) -> str:
    """The token from `Authorization: Bearer <token>` (or Basic with the token as user name, as
    `curl https://<token>@host/...` sends it); `header` is that header's value."""
    kind, _, value = header.partition(" ")
    if kind.lower() == "bearer" and value.strip():
        return value.strip()
    if kind.lower() == "basic" and value.strip():
        try:
            user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user:
            return user
    raise Unauthenticated(
        "this registry requires an API token: send `Authorization: Bearer <token>` (clients:"
        " OPSML_TRACKING_URI=https://<token>@host or OPSML_TOKEN)"
    )


def scope_for(method: str, path: str) -> Permission:
    """The permission a request needs: admin for tokens, write to stage artifacts, else read."""
    if path.startswith("/api/v1/tokens"):
        return Permission.ADMIN
    if method == "PUT" and path.startswith("/api/v1/staging/"):
        return Permission.WRITE
    return Permission.READ


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        auth_on: bool,
        tokens: TokenCache,
        open_paths: frozenset[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.auth_on = auth_on
        self.tokens = tokens
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if "\x00" in path or b"%00" in scope.get("query_string", b"").lower():
            await NUL_REFUSED(scope, receive, send)
            return
        if self.auth_on and path not in self.open_paths:
            try:
                who = await self.tokens.authenticate(
                    scope["app"].state.pool, bearer(Headers(scope=scope).get("authorization", ""))
                )
                who.require(scope_for(scope["method"], path))
            except RegistryError as exc:
                status = 401 if exc.code == "unauthenticated" else 403
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                refusal = JSONResponse(
                    {"detail": exc.message, "error_code": exc.code},
                    status_code=status,
                    headers=headers,
                )
                await refusal(scope, receive, send)
                return
            except unavailable.UNAVAILABLE as exc:  # the token lookup met a database restart
                await (await unavailable.answer(scope["app"], exc))(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = who  # request.state.principal
        await self.app(scope, receive, send)
