"""The API's documentation pages, served whole from the package: Swagger UI at /docs and ReDoc
at /redoc, with their scripts and styles from workers/api/static/ (pinned copies, versions and
licences in its README.md) instead of a CDN. A registry often runs where the internet is not
reachable, and pages that load code from a third party are one more thing to trust."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
SWAGGER_JS = f"{STATIC_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_URL}/swagger-ui.css"
REDOC_JS = f"{STATIC_URL}/redoc.standalone.js"
FAVICON = f"{STATIC_URL}/favicon-32x32.png"
ASSET_PATHS = frozenset({SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON})  # open without a token
DOCS_URL, OAUTH2_REDIRECT_URL, REDOC_URL = "/docs", "/docs/oauth2-redirect", "/redoc"


def install(app: FastAPI) -> None:
    """FastAPI's /docs, /docs/oauth2-redirect and /redoc (create it with `docs_url=None,
    redoc_url=None`), pointing at the packaged assets."""
    assert app.openapi_url is not None
    openapi_url = app.openapi_url

    async def swagger_ui_html(req: Request) -> HTMLResponse:
        root = req.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=root + SWAGGER_JS,
            swagger_css_url=root + SWAGGER_CSS,
            swagger_favicon_url=root + FAVICON,
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            # no badge that would send the document to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc_html(req: Request) -> HTMLResponse:
        root = req.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=root + REDOC_JS,
            redoc_favicon_url=root + FAVICON,
            with_google_fonts=False,
        )

    app.add_route(DOCS_URL, swagger_ui_html, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc_html, include_in_schema=False)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
