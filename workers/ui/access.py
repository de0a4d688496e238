"""Who may see the UI: with access control on, an API token given once on the login page and kept
in an HttpOnly, SameSite=Strict cookie; off (`opsml dev` on loopback), open like the API.

The decision is the API's own: the token is checked by the same `TokenCache` the guard uses
(workers/api/guard.py, one cache on `app.state.tokens`) and must carry the `read` scope
(registry_core/auth.py: `read` covers the whole registry, so every space a page or the live
stream shows is readable by any token that may read at all). The guard leaves the UI's paths to
this module (`UiPaths`), because a browser sends a cookie, not an `Authorization` header.

The only forms that write anything (log in, log out) are CSRF-safe twice over: the cookies are
SameSite=Strict, and each form carries a random token that must equal its cookie (double
submit), with the Origin header, when sent, required to be this site."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from registry_core.auth import Principal, Scope
from registry_core.domain.errors import Forbidden, RegistryError, Unauthenticated

TOKEN_COOKIE = "opsml_ui_token"
CSRF_COOKIE = "opsml_ui_csrf"
PREFIX = "/ui"
OPEN = frozenset({"/ui/login", "/ui/logout"})  # (the static files are open too: see UiPaths)
MAX_FORM = 8192


class UiPaths(frozenset[str]):
    """The guard's open paths plus every UI path: the UI authenticates those itself (cookie)."""

    def __contains__(self, path: object) -> bool:
        if isinstance(path, str) and (path == "/" or path.startswith(PREFIX + "/")):
            return True
        return super().__contains__(path)


class LoginNeeded(Exception):
    """No valid UI session: a page answers with a redirect to the login page, a stream 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def viewer(request: Request) -> Principal | None:
    """The caller of a UI page: None with access control off, else the token's principal with
    the `read` scope (LoginNeeded without a valid token, Forbidden without the scope)."""
    if not request.app.state.auth_on:
        return None
    token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise LoginNeeded("log in with an API token to see this registry")
    try:
        who = await request.app.state.tokens.authenticate(request.app.state.pool, token)
    except Unauthenticated as exc:
        raise LoginNeeded(exc.message) from None
    who.require(Scope.READ)
    return who


def may_read(who: Principal | None, space: str) -> bool:
    """The read rule of registry_core/auth.py for one space: any token with `read` reads all."""
    del space  # read scope is registry-wide; kept as a parameter so every caller names it
    return who is None or who.has(Scope.READ)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never `//host` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request, reason: str) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"{PREFIX}/login?next={quote(here, safe='')}&why={quote(reason[:200], safe='')}",
        status_code=303,
    )


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_csrf(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, value, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )  # fmt: skip


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart dependency), checked for CSRF."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise Forbidden("the form is too large")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this form was sent from another site")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden("the form's check value does not match: reload the page and try again")
    return fields


async def log_in(request: Request, token: str) -> Principal:
    """Check a token exactly as the API would (and that it may read)."""
    try:
        who: Principal = await request.app.state.tokens.authenticate(
            request.app.state.pool, token.strip()
        )
        who.require(Scope.READ)
    except RegistryError:
        raise
    return who


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https", max_age=12 * 3600,
    )  # fmt: skip


def end_session(response: Response) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
