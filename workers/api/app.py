"""The HTTP read API assembled: the FastAPI app, its lifespan, error answers, the guard and
fast-path layers, the documentation pages and one router per resource. Nothing here answers a
request; each piece lives in its own module (the map in workers/api/__init__.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

import registry_core
from registry_core.contracts.http import ErrorBody
from registry_core.persistence.tokens import TokenCache
from registry_core.settings import Settings, get_settings
from workers.api import docs, errors
from workers.api.fast_outcome import FastOutcome
from workers.api.guard import OPEN_PATHS, Guard
from workers.api.lifespan import lifespan
from workers.api.observe import Observe
from workers.api.routers import aliases, artifacts, cards, commands, ops, tokens, webhooks
from workers.ui import UiPaths
from workers.ui import install as install_ui


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()
    auth_on = s.auth_required(s.api_host)  # raises for an unsafe combination: fail at start
    app = FastAPI(
        title="opsml-registry",
        version=registry_core.__version__,
        description="Read API of opsml-registry: cards, client configuration, command outcomes.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses={
            400: {"model": ErrorBody, "description": "the request could not be read"},
            401: {"model": ErrorBody, "description": "no valid API token (access control on)"},
            403: {"model": ErrorBody, "description": "the token lacks the scope or space"},
            422: {"model": ErrorBody, "description": "invalid input"},
            503: {"model": ErrorBody, "description": "database or storage unavailable; retry"},
        },
    )
    app.state.settings = s
    app.state.auth_on = auth_on
    # read once, at start: a missing CA file stops the API here, not at a client's first call
    app.state.client_ca = Path(s.kafka_ssl_cafile).read_text() if s.kafka_ssl_cafile else None

    errors.install(app)
    # Plain ASGI layers, the last added outermost: the Guard sees every request first (NUL
    # refusal, authentication), then the fast path answers the client's long-poll, and only
    # the rest reaches FastAPI's routing.
    app.add_middleware(FastOutcome, wait_max=s.command_wait_max_seconds)
    # one token cache for the guard and the UI's cookie sessions; the UI's paths are left to
    # the UI, which checks its cookie with that same cache (workers/ui/access.py)
    app.state.tokens = TokenCache(s.token_cache_seconds)
    app.add_middleware(
        Guard, auth_on=auth_on, tokens=app.state.tokens,
        open_paths=UiPaths(OPEN_PATHS | docs.ASSET_PATHS),
    )  # fmt: skip
    app.add_middleware(Observe)  # outermost: a request id and the metrics of every request
    docs.install(app)
    for router in (ops.router, tokens.router, cards.router, commands.router, artifacts.router):
        app.include_router(router)
    app.include_router(webhooks.router)
    app.include_router(aliases.router)
    install_ui(app)  # the web UI at / and /ui/ (docs/ui.md)
    return app
