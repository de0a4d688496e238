"""The read API (FastAPI): queries, client config, health, tokens, artifacts, and waiting for
command outcomes.

`app.py` assembles it (`create_app`); `lifespan.py` opens what it needs, `deps.py` hands that to
the routes in `routers/` (one module per resource); `guard.py` checks every request first,
`fast_outcome.py` answers the client's long-poll without routing, with `outcomes.py` (the wait
and the bytes, shared with the route) and `waiters.py` (LISTEN/NOTIFY); `errors.py` and
`unavailable.py` say how failures are answered; `ranges.py` reads byte ranges; `docs.py` serves
/docs and /redoc from `static/`; `wire.py` is uvicorn's protocol with one write per response.
"""
