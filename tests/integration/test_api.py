"""The read API over HTTP: docs, health, config, filters and clear errors."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from client import AsyncCardRegistry, DataCard, RunCard
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_docs_health_and_config(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as http:
        assert (await http.get("/docs")).status_code == 200
        spec = (await http.get("/openapi.json")).json()
        for path in ("/healthz", "/api/v1/config", "/api/v1/cards", "/api/v1/cards/{uid}",
                     "/api/v1/commands/{command_id}"):  # fmt: skip
            assert path in spec["paths"]
        health = (await http.get("/healthz")).json()
        assert health["status"] == "ok" and health["sequencer"]["epoch"] == 1
        cfg = (await http.get("/api/v1/config")).json()
        assert cfg["kafka"]["bootstrap_servers"] == stack.bootstrap
        assert cfg["kafka"]["commands_topic"] == "opsml.commands"
        assert cfg["kafka"]["events_topic"] == "opsml.events"


STATIC = Path(__file__).parents[2] / "workers" / "api" / "static"
URL_RE = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url: *'([^']+)'""")


async def test_docs_pages_load_everything_from_the_api(stack: Stack) -> None:
    """/docs and /redoc work offline: every script, style and icon they reference is served by
    the API itself (the vendored copies, byte for byte), and nothing points at another host."""
    async with httpx.AsyncClient(base_url=stack.url) as http:
        wanted = {"/docs": "swagger-ui-bundle.js", "/redoc": "redoc.standalone.js"}
        for page, script in wanted.items():
            resp = await http.get(page)
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
            html = resp.text
            assert "http://" not in html and "https://" not in html
            urls = {a or b for a, b in URL_RE.findall(html)}
            assert f"/static/{script}" in urls and "/openapi.json" in urls, urls
            assert "fonts.googleapis" not in html
            for url in urls:
                assert url.startswith("/") and not url.startswith("//"), url
                got = await http.get(url)
                assert got.status_code == 200, url
                if url.startswith("/static/"):
                    vendored = (STATIC / url.removeprefix("/static/")).read_bytes()
                    assert (
                        hashlib.sha256(got.content).hexdigest()
                        == hashlib.sha256(vendored).hexdigest()
                    )
                    kind = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
                    assert got.headers["content-type"].startswith(kind[Path(url).suffix]), url
        assert "/static/swagger-ui.css" in (await http.get("/docs")).text
        assert (await http.get("/docs/oauth2-redirect")).status_code == 200
        assert (await http.get("/static/../app.py")).status_code == 404


async def test_a_stopping_api_answers_open_long_polls_503_within_seconds(stack: Stack) -> None:
    """SIGTERM with clients mid long-poll: the API stops in about its graceful-shutdown time
    (not the polls' 25 s), and every waiting request - the client's exact form (the fast path)
    and any other form (the route) - is answered 503 with Retry-After, which the client
    retries, never 500, which it reports as a failed registration."""
    assert stack.api is not None
    async with httpx.AsyncClient(base_url=stack.url, timeout=40) as http:
        waits = [f"/api/v1/commands/{uuid.uuid4()}?wait=25" for _ in range(5)]
        waits += [f"/api/v1/commands/{str(uuid.uuid4()).upper()}?wait=25" for _ in range(5)]
        polls = [asyncio.create_task(http.get(w)) for w in waits]
        await asyncio.sleep(1.0)  # all of them waiting
        assert not any(p.done() for p in polls)
        t0 = time.monotonic()
        stack.api.send_signal(signal.SIGTERM)
        answers = await asyncio.gather(*polls)
        await asyncio.to_thread(stack.api.wait, 15)
        took = time.monotonic() - t0
    assert took < 4, f"the API took {took:.1f} s to stop"
    for resp in answers:
        assert resp.status_code == 503, (resp.status_code, resp.text)
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["error_code"] == "unavailable"


async def test_filters_and_newest_first_by_precedence(stack: Stack) -> None:
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as runs:
        for v in ("1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "1.100.0"):
            await runs.register_card(RunCard(space="a", name="x"), version=v)
        await runs.register_card(RunCard(space="b", name="x"))
    async with AsyncCardRegistry("data", tracking_uri=stack.url) as data:
        await data.register_card(DataCard(space="a", name="x"))
    async with httpx.AsyncClient(base_url=stack.url) as http:
        body = (
            await http.get("/api/v1/cards", params={"registry": "run", "space": "a", "name": "x"})
        ).json()
        assert [c["version"] for c in body["cards"]] == [
            "2.0.0-rc.1",
            "1.100.0",
            "1.10.0",
            "1.9.0",
            "1.2.0",
        ]
        two = (
            await http.get("/api/v1/cards", params={"registry": "run", "space": "a", "limit": 2})
        ).json()
        assert len(two["cards"]) == 2
        all_x = (await http.get("/api/v1/cards", params={"name": "x"})).json()["cards"]
        assert {(c["registry"], c["space"]) for c in all_x} == {
            ("run", "a"),
            ("run", "b"),
            ("data", "a"),
        }
        exact = (await http.get("/api/v1/cards", params={"space": "a", "version": "1.10.0"})).json()
        assert [c["version"] for c in exact["cards"]] == ["1.10.0"]
        uid = exact["cards"][0]["uid"]
        one = (await http.get(f"/api/v1/cards/{uid}")).json()
        assert one["version"] == "1.10.0" and one["event_offset"] > 0


@pytest.mark.parametrize(
    ("path", "params", "status", "needle"),
    [
        (f"/api/v1/cards/{uuid.uuid4()}", {}, 404, "no card with uid"),
        ("/api/v1/cards/not-a-uuid", {}, 422, "uuid"),
        ("/api/v1/cards", {"registry": "nope"}, 422, "registry"),
        ("/api/v1/cards", {"name": "Bad Name"}, 422, "is invalid"),
        ("/api/v1/cards", {"space": "x'; DROP TABLE cards; --"}, 422, "is invalid"),
        ("/api/v1/cards", {"version": "1.2.3.4"}, 422, "invalid version constraint"),
        ("/api/v1/cards", {"tag": "novalue"}, 422, "key:value"),
        ("/api/v1/cards", {"cursor": "garbage"}, 422, "cursor is not valid"),
        ("/api/v1/cards", {"limit": 0}, 422, "limit"),
        ("/api/v1/commands/not-a-uuid", {}, 422, "uuid"),
        ("/api/v1/commands/" + str(uuid.uuid4()), {"wait": 999}, 422, "wait"),
    ],
)
async def test_clear_errors(
    stack: Stack, path: str, params: dict, status: int, needle: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as http:
        resp = await http.get(path, params=params)
    assert resp.status_code == status, resp.text
    assert needle in resp.text.lower()
