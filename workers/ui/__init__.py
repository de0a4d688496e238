"""The web UI, served by the API process at `/` and `/ui/...` (the API stays under /api/v1).

Rooms: `pages.py` the routes, `card.py` the card page's content, `data.py` the UI's reads,
`charts.py` SVG metric charts and lineage graphs, `live.py` the LISTEN/NOTIFY feed and its
server-sent events, `access.py` the cookie session and CSRF checks; `templates/` Jinja2
pages, `static/` the stylesheet and the live-update script (no third-party code)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from workers.ui.access import UiPaths
from workers.ui.data import CountsCache
from workers.ui.live import LiveHub
from workers.ui.pages import HERE, router

__all__ = ["LiveHub", "UiPaths", "install"]


def install(app: FastAPI) -> None:
    """The UI's routes and static files on the API's app (its live hub starts in the lifespan)."""
    app.state.ui_counts = CountsCache()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
