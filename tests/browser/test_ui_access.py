"""The web UI with access control on, in a real browser and over plain HTTP: pages and the live
stream need a login; the login page keeps the token in an HttpOnly, SameSite=Strict cookie
checked by the API's own token cache; the login and logout forms refuse a missing or foreign
CSRF value; the API itself still wants its bearer token; a revoked token ends the session."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from client import AsyncCardRegistry, RunCard
from registry_core.auth import split_token
from registry_core.persistence import tokens
from tests.browser.conftest import Console, make_token
from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def _revoke(stack: Stack, token: str) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await tokens.revoke_token(conn, split_token(token)[0])
    finally:
        await conn.close()


async def test_login_cookie_scope_csrf_and_live(
    ui_stack: Stack, browser: Any, shots: Path, admin_url: str
) -> None:
    url = ui_stack.url
    reader = await make_token(ui_stack, "viewer", "read")

    # without a session: pages send the browser to the login page, the stream is refused,
    # and the API is unchanged (a bearer token, never the cookie)
    async with httpx.AsyncClient(base_url=url) as anon:
        for path in (
            "/",
            "/ui/r/data",
            "/ui/events",
            "/ui/cards/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
        ):
            got = await anon.get(path)
            assert got.status_code == 303 and got.headers["location"].startswith(
                "/ui/login?next="
            ), path
        assert (await anon.get("/ui/stream")).status_code == 401
        api = await anon.get("/api/v1/cards", headers={"Cookie": f"opsml_ui_token={reader}"})
        assert api.status_code == 401
        # CSRF: a login form without the check value, or from another site, is refused
        page = await anon.get("/ui/login")
        csrf = page.cookies["opsml_ui_csrf"]
        assert f'value="{csrf}"' in page.text
        no_check = await anon.post("/ui/login", data={"token": reader})
        assert no_check.status_code == 403 and "opsml_ui_token" not in no_check.cookies
        foreign = await anon.post(
            "/ui/login", data={"token": reader, "csrf": csrf},
            headers={"Origin": "http://evil.example"},
        )  # fmt: skip
        assert foreign.status_code == 403 and "opsml_ui_token" not in foreign.cookies

    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    console = Console()
    try:
        page = await context.new_page()
        console.watch(page)
        await page.goto(url + "/ui/r/data")
        assert "/ui/login" in page.url
        await page.get_by_label("API token").fill("opsml_0123456789ab_" + "a" * 43)
        await page.get_by_role("button", name="Log in").click()
        assert "unknown, revoked or expired" in await page.get_by_role("alert").inner_text()
        await page.get_by_label("API token").fill(reader)
        await page.screenshot(path=str(shots / "login.png"))
        await page.get_by_label("API token").press("Enter")
        await page.wait_for_url(url + "/ui/r/data")  # back where the login began
        cookie = next(c for c in await context.cookies() if c["name"] == "opsml_ui_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert reader not in await page.evaluate("document.cookie")  # no script can read it
        await page.goto(url + "/")  # the overview's latest registrations
        await page.wait_for_selector("#live-state[data-state=live]", timeout=5000)

        # the session's live stream: a card registered by another token appears here
        async with AsyncCardRegistry("run", tracking_uri=admin_url) as reg:
            t0 = time.monotonic()
            await reg.register_card(RunCard(space="secure", name="shown-live"))
            await page.locator("main").get_by_text("shown-live").wait_for(timeout=3000)
            assert time.monotonic() - t0 < 3

        # logging out needs the form's check value too, then the session is gone
        async with httpx.AsyncClient(base_url=url, cookies={"opsml_ui_token": reader}) as http:
            assert (await http.post("/ui/logout", data={})).status_code == 403
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_url("**/ui/login")
        assert not [c for c in await context.cookies() if c["name"] == "opsml_ui_token"]
        await page.goto(url + "/")
        assert "/ui/login" in page.url

        # a revoked token: the next page asks for a login again
        await page.get_by_label("API token").fill(reader)
        await page.get_by_label("API token").press("Enter")
        await page.wait_for_url(url + "/")
        await _revoke(ui_stack, reader)
        await page.goto(url + "/ui/events")
        assert "/ui/login" in page.url
        # only refusals: the wrong token's 401 (and a stream cut by the logout may retry once)
        assert console.errors and all("status of 401" in e for e in console.errors), console.errors
    finally:
        await context.close()
