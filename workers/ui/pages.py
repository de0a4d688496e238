"""The UI's routes: overview, a registry's names with search, a name's versions, a card, the
event feed, the live stream, file downloads and the login page. Each handler reads through
workers/ui/data.py or card.py and renders one template; failures become an HTML page with the
API's message and status (never a JSON body in a browser tab)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from registry_core.domain.cards import RegistryType, registry_type
from registry_core.domain.errors import CardNotFound, InvalidQuery, RegistryError
from registry_core.domain.names import validate_name
from registry_core.persistence import read
from workers.api.deps import PoolDep, StoreDep
from workers.api.errors import STATUS_FOR_ERROR
from workers.api.routers import artifacts
from workers.ui import access, data
from workers.ui.card import card_href, card_view

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["tojson_attr"] = lambda v: orjson.dumps(v, default=str).decode()
templates.env.globals["card_href"] = card_href
templates.env.globals["is_prerelease"] = data.is_prerelease
templates.env.globals["registries"] = [r.value for r in RegistryType]
router = APIRouter(include_in_schema=False)
P = ParamSpec("P")


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("watch", {"all": True})
    ctx["auth_on"] = request.app.state.auth_on
    ctx["csrf"] = request.cookies.get(access.CSRF_COOKIE) or access.new_csrf()
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    if ctx["auth_on"] and not request.cookies.get(access.CSRF_COOKIE):
        access.set_csrf(response, request, ctx["csrf"])
    response.headers["Cache-Control"] = "no-store"
    return response


def page(fn: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """A registry error or a missing login as an HTML answer (the route's own request)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await fn(*args, **kwargs)
        except access.LoginNeeded as exc:
            return access.login_redirect(request, exc.reason)
        except RegistryError as exc:
            status = STATUS_FOR_ERROR.get(exc.code, 400)
            return render(request, "error.html", status, message=exc.message, code=exc.code)

    return wrapper


def _registry(value: str) -> str:
    try:
        return registry_type(value).value
    except ValueError as exc:
        raise CardNotFound(str(exc)) from None


def _uid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise CardNotFound(f"{value[:60]!r} is not a card uid") from None


@router.get("/")
@page
async def overview(request: Request, pool: PoolDep) -> Response:
    await access.viewer(request)
    counts = await request.app.state.ui_counts.get(pool)
    latest = await data.recent_events(pool, None, 15, ["card_registered"])
    return render(
        request, "overview.html", summary=data.summarise(counts), latest=latest,
        total=sum(r["cards"] for r in counts),
    )  # fmt: skip


def _tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.replace(",", " ").split():
        key, sep, value = part.partition(":")
        if not sep or not key:
            raise InvalidQuery(f"tag filter {part!r} must look like key:value")
        tags[key] = value
    return tags


@router.get("/ui/r/{registry}")
@router.get("/ui/r/{registry}/{space}")
@page
async def names(
    request: Request,
    pool: PoolDep,
    registry: str,
    space: str | None = None,
    q: str = "",
    tags: str = "",
    version: str = "",
    deleted: str = "",
    cursor: str = "",
) -> Response:
    await access.viewer(request)
    reg = _registry(registry)
    if space:
        validate_name(space, field="space")
    form: dict[str, Any] = {"q": q.strip()[:64], "tags": tags.strip()[:500],
                            "version": version.strip()[:200], "deleted": bool(deleted)}  # fmt: skip
    search = data.NameSearch(
        registry=reg, space=space, q=form["q"], tags=_tags(form["tags"]),
        version=form["version"], include_deleted=form["deleted"], cursor=cursor or None,
    )  # fmt: skip
    rows, next_cursor = await data.search_names(pool, search)
    watch = {"registry": reg, **({"space": space} if space else {})}
    return render(
        request, "names.html", registry=reg, space=space, form=form, rows=rows,
        next_cursor=next_cursor, first=not cursor, watch=watch,
    )  # fmt: skip


@router.get("/ui/r/{registry}/{space}/{name}")
@page
async def versions(
    request: Request, pool: PoolDep, registry: str, space: str, name: str, cursor: str = ""
) -> Response:
    await access.viewer(request)
    reg = _registry(registry)
    validate_name(space, field="space")
    validate_name(name, field="name")
    f = read.CardFilter(registry=reg, space=space, name=name, include_deleted=True, limit=100,
                        cursor=cursor or None)  # fmt: skip
    rows, next_cursor = await read.list_cards(pool, f)
    for r in rows:  # a card whose tags the read tables kept in another shape (odd writers)
        r["tags"] = r["tags"] if isinstance(r["tags"], dict) else {}
    if not rows and not cursor:
        raise CardNotFound(f"no card named {reg}/{space}/{name}")
    return render(
        request, "versions.html", registry=reg, space=space, name=name, rows=rows,
        next_cursor=next_cursor, first=not cursor,
        watch={"registry": reg, "space": space, "name": name},
    )  # fmt: skip


@router.get("/ui/cards/{uid}")
@page
async def card(
    request: Request,
    pool: PoolDep,
    uid: str,
    compare: list[str] = Query(default=[]),  # noqa: B008
) -> Response:
    await access.viewer(request)
    row = await read.get_card(pool, _uid(uid))
    if row is None:
        raise CardNotFound(f"no card with uid {uid}")
    view = await card_view(pool, row, [_uid(c) for c in compare[:20]])
    watch = {"uids": view["watch_uids"], "registry": row["registry"], "space": row["space"],
             "name": row["name"]}  # fmt: skip
    return render(request, "card.html", watch=watch, **view)


@router.get("/ui/cards/{uid}/files/{path:path}")
@page
async def download(
    request: Request, pool: PoolDep, store: StoreDep, uid: str, path: str
) -> Response:
    """A card's file, for a browser (the cookie session), through the API's own download."""
    await access.viewer(request)
    return await artifacts.download_artifact(request, _uid(uid), path, pool, store)


@router.get("/ui/events")
@page
async def events(request: Request, pool: PoolDep, before: str = "") -> Response:
    await access.viewer(request)
    offset = int(before) if before.isdigit() and len(before) < 19 else None
    rows = await data.recent_events(pool, offset, data.EVENTS_PAGE)
    older = rows[-1]["event_offset"] if len(rows) == data.EVENTS_PAGE else None
    return render(
        request, "events.html", rows=rows, older=older, first=offset is None,
        watch={"all": True} if offset is None else {},  # older pages do not change
    )  # fmt: skip


@router.get("/ui/stream")
async def stream(request: Request) -> Response:
    """Server-sent events: one message per registration, update or delete (workers/ui/live.py)."""
    try:
        who = await access.viewer(request)
    except (access.LoginNeeded, RegistryError) as exc:
        return Response(str(exc), status_code=401, media_type="text/plain")
    return StreamingResponse(
        request.app.state.ui_live.stream(who, recheck=lambda: access.viewer(request)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/ui/login")
async def login_page(request: Request, next: str = "/", why: str = "") -> Response:
    if not request.app.state.auth_on:
        return render(request, "login.html", open_registry=True, next=access.safe_next(next),
                      watch={})  # fmt: skip
    return render(request, "login.html", next=access.safe_next(next), why=why[:200],
                  watch={})  # fmt: skip


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form: dict[str, str] = {}
    try:
        form = await access.read_form(request)
        token = form.get("token", "")
        await access.log_in(request, token)
    except RegistryError as exc:
        status = STATUS_FOR_ERROR.get(exc.code, 400)
        return render(request, "login.html", status, error=exc.message, watch={},
                      next=access.safe_next(form.get("next")))  # fmt: skip
    response = Response(status_code=303, headers={"Location": access.safe_next(form.get("next"))})
    access.set_session(response, request, token)
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    try:
        await access.read_form(request)
    except RegistryError as exc:
        return render(request, "error.html", 403, message=exc.message, code=exc.code)
    response = Response(status_code=303, headers={"Location": "/ui/login"})
    access.end_session(response)
    return response
