"""The HTTP read API. Wiring lives in `create_app`; handlers parse, call the core, answer."""

from __future__ import annotations

import asyncio
import base64
import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

import registry_core
from registry_core.auth import ALL_SPACES, Scope, issue_grant, parse_scopes
from registry_core.contracts.http import (
    CardList,
    CardOut,
    ClientConfig,
    CommandGrant,
    CommandOutcome,
    ErrorBody,
    Health,
    KafkaConfig,
    KnownArtifacts,
    KnownArtifactsQuery,
    Lineage,
    LineageLink,
    MetricPoint,
    NewToken,
    OutcomeList,
    OutcomesQuery,
    QueryDatetime,
    RunMetrics,
    StagedFile,
    TokenList,
    TokenOut,
    TokenRequest,
)
from registry_core.domain.artifacts import (
    SHA256_RE,
    card_prefix,
    staging_prefix,
    validate_artifact_path,
)
from registry_core.domain.cards import registry_type
from registry_core.domain.errors import (
    ArtifactTooLarge,
    CardNotFound,
    Forbidden,
    InvalidArtifact,
    InvalidQuery,
    RegistryError,
    Unauthenticated,
    clip,
    summarize_validation,
)
from registry_core.domain.names import validate_name
from registry_core.messaging import ensure_topics
from registry_core.persistence import db, read
from registry_core.persistence.projection import get_tracking
from registry_core.persistence.tokens import TokenCache, create_token, list_tokens, revoke_token
from registry_core.settings import Settings, get_settings
from registry_core.storage import open_store
from workers.api import unavailable
from workers.api.waiters import OutcomeWaiters

log = structlog.get_logger("opsml.api")

STATUS_FOR_ERROR = {
    "card_not_found": 404,
    "artifact_too_large": 413,
    "unauthenticated": 401,
    "forbidden": 403,
}
RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
PAST_ANY_FILE = 2**63  # a Range position of more than 18 digits: beyond any file


def _bounded_int(digits: str) -> int:
    """ASCII digits as an int; more than 18 significant digits (int() refuses more than 4300)
    count as PAST_ANY_FILE."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else PAST_ANY_FILE


def parse_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of the one range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of
    `size` bytes (an end past the file is its last byte, a suffix longer than the file is all
    of it). ValueError, with the reason, for anything else: answered 416."""
    m = RANGE_RE.fullmatch(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        raise ValueError(
            f"bad Range {clip(header, 60)!r}: send one range, bytes=<first>-<last>,"
            " bytes=<first>- or bytes=-<length>"
        )
    if m.group(1):
        start = _bounded_int(m.group(1))
        last = _bounded_int(m.group(2)) if m.group(2) else PAST_ANY_FILE
        if last < start:
            raise ValueError(f"bad Range {clip(header, 60)!r}: the last byte is before the first")
        end = min(last, size - 1)
    else:
        length = _bounded_int(m.group(2))
        if length == 0:
            raise ValueError("bad Range: bytes=-0 asks for no bytes")
        start, end = max(0, size - length), size - 1
    if start >= size:
        raise ValueError(f"Range starts past the end of the file ({size} bytes)")
    return start, end


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body, default=str), media_type="application/json")


OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def _bearer(header: str) -> str:
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


def _scope_for(method: str, path: str) -> Scope:
    if path.startswith("/api/v1/tokens"):
        return Scope.ADMIN
    if method == "PUT" and path.startswith("/api/v1/staging/"):
        return Scope.WRITE
    return Scope.READ


NUL_REFUSED = JSONResponse(
    {"detail": "NUL characters (U+0000) are not allowed in paths or queries",
     "error_code": "invalid_request"},
    status_code=422,
)  # fmt: skip


class Guard:
    """Refuse NUL characters (Postgres text cannot hold U+0000) in paths and query strings,
    then, when access control is on, authenticate the token and check the route's scope; the
    principal lands in `request.state.principal`. A plain ASGI middleware: it answers refusals
    itself and otherwise passes the request through untouched."""

    def __init__(
        self, app: ASGIApp, *, auth_on: bool, tokens: TokenCache, wait_max: float = 30.0
    ) -> None:
        self.app = app
        self.auth_on = auth_on
        self.tokens = tokens
        self.wait_max = wait_max

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if "\x00" in path or b"%00" in scope.get("query_string", b"").lower():
            await NUL_REFUSED(scope, receive, send)
            return
        if self.auth_on and path not in OPEN_PATHS:
            try:
                who = await self.tokens.authenticate(
                    scope["app"].state.pool, _bearer(Headers(scope=scope).get("authorization", ""))
                )
                who.require(_scope_for(scope["method"], path))
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
        fast = fast_outcome_args(scope)
        if fast is not None:
            try:
                status, body = await answer_outcome(scope["app"], *fast, self.wait_max)
            except unavailable.UNAVAILABLE as exc:  # a database restart: 503 as the route would
                await (await unavailable.answer(scope["app"], exc))(scope, receive, send)
                return
            head = [(b"content-length", b"%d" % len(body)), (b"content-type", JSON_BYTES)]
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


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


JSON = "application/json"
JSON_BYTES = JSON.encode()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pool `reset` that leaves the session as it is (see create_app)."""


def _expire(woken: asyncio.Future[Any]) -> None:
    if not woken.done():
        woken.set_result(None)


def _pending_json(command_id: UUID) -> bytes:
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


async def answer_outcome(
    app: Any, command_id: UUID, wait: float, wait_max: float
) -> tuple[int, bytes]:
    """(status, JSON body) of `GET /api/v1/commands/{command_id}?wait=...`: 200 with the
    outcome, or 202 with a pending one when `wait` ran out first."""
    pool = app.state.pool
    wait = min(wait, wait_max)
    with app.state.waiters.expect(str(command_id)) as woken:
        row = await read.get_outcome_with_card(pool, command_id)
        if row is None and wait > 0:
            # The waiter hands over the row it read after the NOTIFY (committed by then);
            # woken without one (timeout, listener lost), read it here.
            timer = asyncio.get_running_loop().call_later(wait, _expire, woken)
            try:
                row = await woken
            finally:
                timer.cancel()
            if row is None:
                row = await read.get_outcome_with_card(pool, command_id)
    if row is None:
        return 202, _pending_json(command_id)
    return 200, outcome_json(row)


OUTCOME_PREFIX = "/api/v1/commands/"
WAIT_RE = re.compile(rb"^wait=(\d{1,2}(?:\.\d{1,6})?)$")


def fast_outcome_args(scope: ASGIScope) -> tuple[UUID, float] | None:
    """(command id, wait) when the request is exactly the client's long-poll (`GET
    /api/v1/commands/<canonical uuid>` with nothing or `wait=<0-60>` as the query), answered
    by the Guard without FastAPI's routing and parameter machinery (about a fifth of the API's
    CPU per registration). Anything else - another form of the uuid, other parameters, a wait
    out of range - goes to the route, which validates it and answers errors as documented."""
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


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()
    auth_on = s.auth_required(s.api_host)  # raises for an unsafe combination: fail at start
    tokens = TokenCache(s.token_cache_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = await db.connect(s.dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        # Clients publish straight after reading /config: the topics must exist with 1
        # partition before that, or an auto-creating broker would make them with several.
        await ensure_topics(
            s.kafka_bootstrap_servers,
            [s.commands_topic, s.events_topic],
            client_kwargs=s.kafka_client_kwargs(),
        )
        # `reset=_keep_session`: no reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
        # UNLISTEN *; RESET ALL`) on every release - a round trip per request. The API's pooled
        # connections only run reads and token statements: no session settings, advisory
        # locks, cursors or LISTENs to undo (asyncpg still rolls back an open transaction).
        app.state.pool = await db.create_pool(s.dsn, min_size=1, max_size=10, reset=_keep_session)
        app.state.waiters = OutcomeWaiters(s.dsn)
        await app.state.waiters.start()
        app.state.store = open_store(
            s.storage_uri, s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region
        )
        # Everything alive now (the app, its routes and models, imported modules) lives as long
        # as the process: out of the collector's sight, a full collection scans only what
        # requests allocate instead of pausing for all of it.
        gc.collect()
        gc.freeze()
        log.info("api ready")
        try:
            yield
        finally:
            await app.state.store.close()
            await app.state.waiters.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="opsml-registry",
        version=registry_core.__version__,
        description="Read API of opsml-registry: cards, client configuration, command outcomes.",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorBody, "description": "the request could not be read"},
            401: {"model": ErrorBody, "description": "no valid API token (access control on)"},
            403: {"model": ErrorBody, "description": "the token lacks the scope or space"},
            422: {"model": ErrorBody, "description": "invalid input"},
            503: {"model": ErrorBody, "description": "database or storage unavailable; retry"},
        },
    )

    unavailable.install(app)  # a database restart answers 503 + Retry-After, not 500

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # never echo the input back: it may be huge, or not even serialisable (NaN, lone
        # surrogates), which made the default handler answer 500
        return JSONResponse(
            {"detail": summarize_validation(exc), "error_code": "invalid_request"},
            status_code=422,
        )

    # Added last, so it runs outermost among the user middleware - where
    # `@app.middleware("http")` ran it - but as plain ASGI: no BaseHTTPMiddleware task and
    # streams per request.
    app.add_middleware(Guard, auth_on=auth_on, tokens=tokens, wait_max=s.command_wait_max_seconds)

    @app.exception_handler(asyncpg.DataError)
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

    @app.exception_handler(RegistryError)
    async def registry_error(_: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message, "error_code": exc.code},
            status_code=STATUS_FOR_ERROR.get(exc.code, 422),
        )

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz(request: Request) -> Any:
        try:
            async with request.app.state.pool.acquire() as conn:
                tracking = await get_tracking(conn, s.worker_name)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            body = Health(status="degraded", database=False, sequencer={})
            return JSONResponse(body.model_dump(), status_code=503)
        seq = {
            "command_offset": tracking.command_offset if tracking else None,
            "event_offset": tracking.event_offset if tracking else None,
            "epoch": tracking.claimed_epoch if tracking else None,
        }
        return Health(status="ok", database=True, sequencer=seq)

    client_ca = Path(s.kafka_ssl_cafile).read_text() if s.kafka_ssl_cafile else None

    @app.get("/api/v1/config", response_model=ClientConfig, tags=["client"])
    async def config(request: Request) -> ClientConfig:
        """What a client needs besides OPSML_TRACKING_URI: where and how to publish commands,
        and (with access control on, for a token with the write scope) a grant to sign them."""
        grant = None
        who = getattr(request.state, "principal", None)
        key = s.grant_key_bytes()
        if who is not None and key is not None and who.has(Scope.WRITE):
            g = issue_grant(key, who, datetime.now(UTC))
            grant = CommandGrant(grant=g.grant, signing_key=g.signing_key, expires_at=g.expires_at)
        password = s.kafka_client_sasl_password
        return ClientConfig(
            server_version=registry_core.__version__,
            auth=auth_on,
            grant=grant,
            kafka=KafkaConfig(
                bootstrap_servers=s.kafka_client_bootstrap_servers or s.kafka_bootstrap_servers,
                commands_topic=s.commands_topic,
                events_topic=s.events_topic,
                security_protocol=s.kafka_client_security_protocol or s.kafka_security_protocol,
                max_message_bytes=s.max_command_bytes,
                sasl_mechanism=(s.kafka_client_sasl_mechanism or s.kafka_sasl_mechanism)
                if s.kafka_client_sasl_username
                else None,
                sasl_username=s.kafka_client_sasl_username,
                sasl_password=password.get_secret_value() if password else None,
                ssl_ca_pem=client_ca,
            ),
        )

    @app.post(
        "/api/v1/tokens",
        response_model=NewToken,
        status_code=201,
        tags=["tokens"],
    )
    async def new_token(request: Request, body: TokenRequest) -> NewToken:
        """Create an API token (admin scope on every space). The token is shown once."""
        _require_all_spaces(request)
        try:
            scopes = parse_scopes(body.scopes)
        except ValueError as exc:
            raise InvalidQuery(str(exc)) from None
        expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
        try:
            token, info = await create_token(
                request.app.state.pool, body.name, scopes, body.spaces, expires
            )
        except ValueError as exc:
            raise InvalidQuery(str(exc)) from None
        log.info("token created", token_id=info.token_id, name=info.name, scopes=info.scopes)
        return NewToken(token=token, info=TokenOut(**asdict(info)))

    @app.get("/api/v1/tokens", response_model=TokenList, tags=["tokens"])
    async def tokens_list(request: Request) -> TokenList:
        """Every token's id, name, scopes, spaces and dates (never a secret or a hash)."""
        _require_all_spaces(request)
        infos = await list_tokens(request.app.state.pool)
        return TokenList(tokens=[TokenOut(**asdict(i)) for i in infos])

    @app.delete(
        "/api/v1/tokens/{token_id}",
        status_code=204,
        tags=["tokens"],
        responses={404: {"model": ErrorBody}},
    )
    async def token_revoke(request: Request, token_id: str) -> Response:
        """Revoke a token: the API refuses it and the worker rejects commands signed under it
        within OPSML_TOKEN_CACHE_SECONDS."""
        _require_all_spaces(request)
        if not await revoke_token(request.app.state.pool, token_id):
            raise CardNotFound(f"no active token {clip(token_id, 40)}")
        log.info("token revoked", token_id=token_id)
        return Response(status_code=204)

    @app.get("/api/v1/cards", response_model=CardList, tags=["cards"])
    async def list_cards(
        request: Request,
        registry: str | None = None,
        space: str | None = None,
        name: str | None = None,
        version: Annotated[
            str | None,
            Query(
                description="exact ('1.2.3'), a line ('1', '1.2', '1.*', '1.2.*'), '^1.2.0',"
                " '~1.2.0', or comparators ('>=1.2,<2')"
            ),
        ] = None,
        uid: UUID | None = None,
        tag: Annotated[list[str] | None, Query(description="key:value, repeatable (AND)")] = None,
        max_date: QueryDatetime | None = None,
        limit: Annotated[int, Query(ge=1, le=read.MAX_LIMIT)] = 100,
        sort_by_timestamp: bool = False,
        ignore_release_candidates: bool = False,
        include_deleted: bool = False,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> Any:
        """Cards matching every given filter, newest version first (semver precedence: a
        pre-release sorts below its release), or newest first by creation time with
        `sort_by_timestamp`. Page with `cursor` = the previous page's `next_cursor`."""
        if registry is not None:
            try:
                registry = registry_type(registry).value
            except ValueError as exc:
                raise InvalidQuery(str(exc)) from None
        if space is not None:
            validate_name(space, field="space")
        if name is not None:
            validate_name(name, field="name")
        tags = {}
        for t in tag or []:
            key, sep, value = t.partition(":")
            if not sep or not key:
                raise InvalidQuery(f"tag filter {t!r} must look like key:value")
            tags[key] = value
        f = read.CardFilter(
            registry=registry,
            space=space,
            name=name,
            version=version,
            uid=uid,
            tags=tags,
            max_date=max_date,
            limit=limit,
            sort_by_timestamp=sort_by_timestamp,
            ignore_release_candidates=ignore_release_candidates,
            include_deleted=include_deleted,
            cursor=cursor,
        )
        rows, next_cursor = await read.list_cards(request.app.state.pool, f)
        # The rows come from our own projection in the documented shape: serialise them
        # directly (orjson handles UUIDs and datetimes) instead of validating each into a model
        # and back - the read path's largest cost for a 100-card page.
        return _json({"cards": rows, "next_cursor": next_cursor})

    @app.get(
        "/api/v1/cards/{uid}/lineage",
        response_model=Lineage,
        tags=["cards"],
        responses={404: {"model": ErrorBody}},
    )
    async def card_lineage(request: Request, uid: UUID) -> Lineage:
        pool = request.app.state.pool
        if await read.get_card(pool, uid) is None:
            raise CardNotFound(f"no card with uid {uid}")
        links = await read.lineage(pool, uid)
        return Lineage(
            uid=uid,
            upstream=[LineageLink(field=f, card=CardOut(**c)) for f, c in links["upstream"]],
            downstream=[LineageLink(field=f, card=CardOut(**c)) for f, c in links["downstream"]],
        )

    @app.get(
        "/api/v1/runs/metrics",
        response_model=RunMetrics,
        tags=["runs"],
        responses={404: {"model": ErrorBody}},
    )
    async def run_metrics(
        request: Request,
        uid: Annotated[list[UUID], Query(min_length=1, max_length=100)],
        name: Annotated[list[str] | None, Query(max_length=100)] = None,
    ) -> RunMetrics:
        """Metrics (by name and step) and parameters of one or more runs, side by side."""
        pool = request.app.state.pool
        cards = {c["uid"]: c for c in await read.get_cards(pool, uid)}
        missing = [str(u) for u in uid if u not in cards]
        if missing:
            raise CardNotFound(f"no card with uid {', '.join(missing)}")
        not_runs = [str(u) for u, c in cards.items() if c["registry"] != "run"]
        if not_runs:
            raise InvalidQuery(f"not run cards: {', '.join(not_runs)}")
        metrics: dict[UUID, dict[str, list[MetricPoint]]] = {u: {} for u in uid}
        for m in await read.run_metrics(pool, uid, name):
            metrics[m["uid"]].setdefault(m["name"], []).append(
                MetricPoint(step=m["step"], value=m["value"], timestamp=m["logged_at"])
            )
        params = {u: dict(cards[u]["attributes"].get("parameters") or {}) for u in uid}
        return RunMetrics(metrics=metrics, parameters=params)

    @app.get(
        "/api/v1/cards/{uid}",
        response_model=CardOut,
        tags=["cards"],
        responses={404: {"model": ErrorBody}},
    )
    async def get_card(request: Request, uid: UUID) -> Any:
        row = await read.get_card(request.app.state.pool, uid)
        if row is None:
            raise CardNotFound(f"no card with uid {uid}")
        return _json(row)

    @app.get(
        "/api/v1/commands/{command_id}",
        response_model=CommandOutcome,
        tags=["commands"],
        responses={202: {"model": CommandOutcome, "description": "not decided yet"}},
    )
    async def command_outcome(
        request: Request,
        command_id: UUID,
        wait: Annotated[
            float, Query(ge=0, le=60, description="seconds to wait for the outcome")
        ] = 0,
    ) -> Any:
        """The outcome of a published command. With `wait`, the request is held until the
        sequencer commits the outcome (woken by LISTEN/NOTIFY) or the wait runs out (202)."""
        # (the client's exact form is answered by the Guard with the same function)
        status, body = await answer_outcome(
            request.app, command_id, wait, s.command_wait_max_seconds
        )
        return Response(body, status_code=status, media_type=JSON)

    @app.post("/api/v1/commands/outcomes", response_model=OutcomeList, tags=["commands"])
    async def command_outcomes(request: Request, query: OutcomesQuery) -> Any:
        """Outcomes of many commands at once (no waiting, no card bodies): the bulk client waits
        for its last command, then collects the rest here in one round trip."""
        rows = await read.get_outcomes(request.app.state.pool, query.command_ids)
        return Response(outcomes_json(rows), media_type=JSON)

    @app.put(
        "/api/v1/staging/{command_id}/{path:path}",
        response_model=StagedFile,
        status_code=201,
        tags=["artifacts"],
        responses={413: {"model": ErrorBody}},
    )
    async def stage_artifact(
        request: Request,
        command_id: UUID,
        path: str,
        x_content_sha256: Annotated[str, Header(description="sha256 of the body, hex")],
    ) -> StagedFile:
        """Upload one artifact file into the staging area of a command that is about to be
        published. The body streams to storage (bounded memory); the declared sha256 is
        checked and a mismatch leaves nothing behind."""
        validate_artifact_path(path)
        sha = x_content_sha256.strip().lower()
        if not SHA256_RE.fullmatch(sha):
            raise InvalidArtifact("X-Content-SHA256 must be 64 hex characters")
        declared = request.headers.get("content-length") or ""
        if (
            declared.isascii()
            and declared.isdigit()
            and _bounded_int(declared) > s.max_artifact_bytes
        ):
            raise ArtifactTooLarge(
                f"{path} is {clip(declared, 30)} bytes, over the registry's limit of"
                f" {s.max_artifact_bytes} bytes"
            )
        key = f"{staging_prefix(command_id)}/{path}"
        stored = await request.app.state.store.put(
            key, request.stream(), sha256=sha, max_bytes=s.max_artifact_bytes
        )
        return StagedFile(path=path, sha256=sha, size=stored.size)

    @app.post("/api/v1/artifacts/known", response_model=KnownArtifacts, tags=["artifacts"])
    async def known_artifacts(request: Request, query: KnownArtifactsQuery) -> KnownArtifacts:
        rows = await read.known_artifacts(
            request.app.state.pool, query.registry, query.space, query.sha256
        )
        return KnownArtifacts(known=sorted({r["sha256"] for r in rows}))

    @app.get(
        "/api/v1/cards/{uid}/artifacts/{path:path}",
        tags=["artifacts"],
        responses={
            200: {"content": {"application/octet-stream": {}}},
            206: {"description": "a byte range"},
            404: {"model": ErrorBody},
            416: {"model": ErrorBody, "description": "a Range this file cannot satisfy"},
        },
    )
    async def download_artifact(request: Request, uid: UUID, path: str) -> Response:
        """Stream one artifact of a card (or its `card.json`). Honours `Range: bytes=a-b`; the
        whole file's sha256 is in `X-Content-SHA256` for the client to verify."""
        row = await read.get_card(request.app.state.pool, uid)
        if row is None:
            raise CardNotFound(f"no card with uid {uid}")
        prefix = card_prefix(row["registry"], row["space"], row["name"], row["version"])
        store = request.app.state.store
        if path == "card.json":
            stat = await store.stat(f"{prefix}/card.json")
            if stat is None:
                raise CardNotFound(f"card {uid} has no card.json in storage")
            size, sha = stat.size, stat.sha256 or ""
        else:
            ref = next((a for a in row["artifacts"] if a["path"] == path), None)
            if ref is None:
                raise CardNotFound(f"card {uid} has no artifact {path!r}")
            size, sha = int(ref["size"]), ref["sha256"]
        key = f"{prefix}/{path}"
        headers = {"Accept-Ranges": "bytes", "X-Content-SHA256": sha}
        wanted = request.headers.get("range")
        if wanted:
            try:
                start, end = parse_range(wanted, size)
            except ValueError as exc:
                return JSONResponse(
                    {"detail": str(exc), "error_code": "range_not_satisfiable"},
                    status_code=416, headers={"Content-Range": f"bytes */{size}"},
                )  # fmt: skip
            headers |= {"Content-Range": f"bytes {start}-{end}/{size}",
                        "Content-Length": str(end - start + 1)}  # fmt: skip
            return StreamingResponse(
                store.read(key, start, end), status_code=206, headers=headers,
                media_type="application/octet-stream",
            )  # fmt: skip
        headers["Content-Length"] = str(size)
        return StreamingResponse(
            store.read(key), headers=headers, media_type="application/octet-stream"
        )

    def _require_all_spaces(request: Request) -> None:
        if not auth_on:
            raise Forbidden(
                "token management needs access control on (set OPSML_GRANT_KEY); an open"
                " registry has no tokens to manage - use `opsml token` against the database"
            )
        who = request.state.principal
        if ALL_SPACES not in who.spaces:
            raise Forbidden(f"token {who.token_id} is limited to some spaces; this needs '*'")

    return app
