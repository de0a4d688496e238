"""The web UI in a real browser (Debian's Chromium through Playwright) against one real stack:
every page renders with no console error and is screenshotted, search by version constraint
works, the metrics chart shows every logged point (two runs on one chart), keyboard navigation
and labels hold (the accessibility tree), and a card registered, updated or deleted by the
client appears on pages that are already open, without a reload, within 2 s."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from client import AsyncCardRegistry, DataCard, RunCard
from tests.browser.conftest import Console
from tests.browser.seed import Seeded, seed
from tests.conftest import Stack

pytestmark = pytest.mark.integration
LIVE_LIMIT = 2.0  # seconds (the browser test; the design target is 1 s)


@pytest.fixture(scope="package")
async def seeded(admin_url: str) -> Seeded:
    return await seed(admin_url)


@pytest.fixture
async def ctx(
    browser: Any, ui_stack: Stack, reader_token: str
) -> AsyncIterator[tuple[Any, Console]]:
    """A browser context logged in with a read token (the cookie the login page sets)."""
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    cookie = {"name": "opsml_ui_token", "value": reader_token, "url": ui_stack.url,
              "httpOnly": True, "sameSite": "Strict"}  # fmt: skip
    await context.add_cookies([cookie])
    console = Console()
    try:
        yield context, console
    finally:
        await context.close()


async def _open(context: Any, console: Console, url: str) -> Any:
    page = await context.new_page()
    console.watch(page)
    resp = await page.goto(url)
    assert resp is not None and resp.status == 200, (url, resp and resp.status)
    await page.wait_for_selector("#live-state[data-state=live]", timeout=5000)
    return page


async def test_every_page_renders_without_console_errors(
    ui_stack: Stack, seeded: Seeded, ctx: tuple[Any, Console], shots: Path
) -> None:
    context, console = ctx
    c = seeded.cards
    pages = {
        "overview": ("/", "Registry overview"),
        "names": ("/ui/r/data/demo", "data cards in demo"),
        "versions": ("/ui/r/data/demo/churn-data", "data/demo/churn-data"),
        "card-data": (f"/ui/cards/{c['data'].uid}", "churn-data"),
        "card-model": (f"/ui/cards/{c['model'].uid}", "churn-model"),
        "card-run": (f"/ui/cards/{c['run1'].uid}?compare={c['run0'].uid}", "churn-train"),
        "card-audit": (f"/ui/cards/{c['audit'].uid}", "churn-audit"),
        "card-prompt": (f"/ui/cards/{c['prompt'].uid}", "churn-explain"),
        "events": ("/ui/events", "Event feed"),
    }
    scroll_to = {"card-run": "#metrics-h", "card-data": "#lineage-h"}  # the part worth a look
    opened = {}
    for shot, (path, heading) in pages.items():
        page = opened[shot] = await _open(context, console, ui_stack.url + path)
        assert heading in await page.locator("h1").inner_text(), shot
        if shot in scroll_to:
            await page.locator(scroll_to[shot]).evaluate("e => e.scrollIntoView()")
        await page.screenshot(path=str(shots / f"{shot}.png"))
    assert console.errors == []

    # what each card page must show, read in the browser
    body = await opened["card-model"].locator("main").inner_text()
    expected = ("sklearn", "scikit-learn", "churn-data 1.0.0", "sample_data.parquet", "model.skops")
    for text in (*expected, c["model"].artifacts[0].sha256):
        assert text in body, text
    page = opened["card-model"]
    assert await page.locator("svg.lineage a").count() >= 3  # data upstream, runs/audit down
    async with page.expect_download() as dl:
        await page.get_by_role("link", name="model.skops").click()
    assert (await dl.value).suggested_filename == "model.skops"
    body = await opened["card-data"].locator("main").inner_text()
    for text in ("age", "int64", "plan", "Rows", "4"):
        assert text in body, text
    page = opened["card-audit"]
    assert "Is any group harmed?" in await page.locator("main").inner_text()
    assert await page.get_by_text("approved", exact=True).count() == 1
    body = await opened["card-prompt"].locator("main").inner_text()
    assert "Explain why {customer} may leave." in body
    # versions in semver order, the pre-release marked, the deleted one a tombstone
    page = opened["versions"]
    rows = page.locator("tr[data-version]")
    versions = [await rows.nth(i).get_attribute("data-version") for i in range(await rows.count())]
    assert versions == [c["pre"].version, "1.3.0", "1.2.0", "1.1.0", "1.0.0"]
    assert "pre-release" in await rows.nth(0).inner_text()
    assert await page.locator("tr.tombstone").count() == 1
    assert "deleted" in await page.locator("tr.tombstone").inner_text()
    assert console.errors == []


async def test_metrics_chart_shows_every_logged_point(
    ui_stack: Stack, seeded: Seeded, ctx: tuple[Any, Console]
) -> None:
    context, console = ctx
    c = seeded.cards
    page = await _open(context, console, f"{ui_stack.url}/ui/cards/{c['run0'].uid}")
    assert await page.locator("svg.chart circle.pt").count() == seeded.run_points["run0"]
    # compare: tick the other run and submit with the keyboard; both runs on the same charts
    await page.get_by_label(c["run1"].version).check()
    await page.get_by_role("button", name="Compare").press("Enter")
    await page.wait_for_url(f"**compare={c['run1'].uid}**")
    total = seeded.run_points["run0"] + seeded.run_points["run1"]
    assert await page.locator("svg.chart circle.pt").count() == total
    loss = page.locator('svg.chart[data-metric="loss"]')
    assert await loss.locator("g.series").count() == 2
    assert await loss.locator("g.series").nth(1).locator("circle.pt").count() == 16
    assert "lr" in await page.locator("table.params").inner_text()
    assert console.errors == []


async def test_search_by_constraint_tags_and_name(
    ui_stack: Stack, seeded: Seeded, ctx: tuple[Any, Console], admin_url: str
) -> None:
    context, console = ctx
    page = await _open(context, console, f"{ui_stack.url}/ui/r/data")

    async def search(**fields: str) -> list[str]:
        for label, key in (("Name contains", "q"), ("Tags", "tags"), ("Version", "version")):
            await page.get_by_label(label).fill(fields.get(key, ""))
        await page.get_by_label("Version").press("Enter")  # submit from the keyboard
        await page.wait_for_load_state()
        cells = page.locator("table.names tbody tr")
        return [
            (await cells.nth(i).locator("td").nth(1).inner_text())
            + " "
            + (await cells.nth(i).locator("td").nth(2).inner_text()).split()[0]
            for i in range(await cells.count())
        ]

    # names by space, then name; each with its newest version in the constraint (1.3.0 is
    # deleted, 2.0.0-rc.N is a pre-release of 2.0.0)
    assert await search(version="^1.2") == ["churn-data 1.2.0", "events-1 1.5.0"]
    assert await search(version="1.*") == ["churn-data 1.2.0", "events-1 1.5.0"]
    assert await search(version=">=0.5,<1") == ["events-0 0.9.0"]
    pre = f"churn-data {seeded.cards['pre'].version}"
    assert await search(version=">=2.0.0-rc.0") == [pre, "events-2 2.4.0"]
    assert await search(q="churn", tags="team:growth") == ["churn-data 1.0.0"]
    assert await search(q="events", version="~2.4") == ["events-2 2.4.0"]
    # pages of 50 names: the next page continues where the first ended
    async with AsyncCardRegistry("run", tracking_uri=admin_url) as reg:
        outcomes = await reg.register_cards(
            [RunCard(space="many", name=f"n-{i:02d}") for i in range(53)]
        )
        assert {o.status for o in outcomes} == {"registered"}
    await page.goto(f"{ui_stack.url}/ui/r/run/many")
    names = page.locator("table.names tbody tr")
    assert await names.count() == 50
    assert await names.nth(49).locator("td").first.inner_text() == "n-49"
    await page.get_by_role("link", name="Next page").click()
    await page.wait_for_load_state()
    assert [await names.nth(i).locator("td").first.inner_text() for i in range(3)] == [
        "n-50",
        "n-51",
        "n-52",
    ]
    assert (
        await names.count() == 3 and await page.get_by_role("link", name="Next page").count() == 0
    )
    # a bad constraint: a clear message on the page, not a JSON body
    await page.get_by_label("Version").fill("^^1")
    await page.get_by_label("Version").press("Enter")
    await page.wait_for_load_state()
    assert "invalid version constraint" in await page.get_by_role("alert").inner_text()
    assert [e for e in console.errors if "400" not in e] == []


async def test_keyboard_navigation_and_labels(
    ui_stack: Stack, seeded: Seeded, ctx: tuple[Any, Console]
) -> None:
    context, console = ctx
    page = await _open(context, console, f"{ui_stack.url}/ui/r/data/demo")
    # the first Tab reaches the skip link, which moves focus to the main content
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "content"
    # every form field has a label (the accessibility tree names it)
    tree = await page.locator("body").aria_snapshot()
    for name in ("Name contains", "Tags", "Version", "Include deleted"):
        assert f'"{name}"' in tree, name
    assert 'navigation "Main"' in tree and "main:" in tree and "heading" in tree
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), button, a[href]')]
             .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                           && !el.textContent.trim()).map(el => el.outerHTML)"""
    )
    assert unnamed == []
    # Tab walks the search form in order
    await page.get_by_label("Name contains").focus()
    order = []
    for _ in range(4):
        await page.keyboard.press("Tab")
        order.append(
            await page.evaluate("document.activeElement.id || document.activeElement.textContent")
        )
    assert order == ["tags", "version", "deleted", "Search"]
    # charts and the lineage graph are named images; their nodes are links reachable by Tab
    page = await _open(context, console, f"{ui_stack.url}/ui/cards/{seeded.cards['run0'].uid}")
    tree = await page.locator("main").aria_snapshot()
    assert 'img "loss per step' in tree and 'img "lineage:' in tree
    assert await page.locator("svg.lineage a[href]").count() >= 3
    assert console.errors == []


async def test_changes_appear_on_open_pages_without_reload(
    ui_stack: Stack, seeded: Seeded, ctx: tuple[Any, Console], admin_url: str
) -> None:
    context, console = ctx
    overview = await _open(context, console, ui_stack.url + "/")
    names = await _open(context, console, f"{ui_stack.url}/ui/r/data/live")
    events = await _open(context, console, f"{ui_stack.url}/ui/events")
    # more tabs than a browser keeps connections to one site (6): the tabs share one stream
    for path in ("/ui/r/run", "/ui/r/model", "/ui/r/audit", "/ui/r/prompt"):
        await _open(context, console, ui_stack.url + path)
    for page in (overview, names, events):  # a reload would reset this marker
        await page.evaluate("window.__notReloaded = true")
    total = overview.locator("#counts-h .muted")
    before = int((await total.inner_text()).strip("()").split()[0])
    async with AsyncCardRegistry("data", tracking_uri=admin_url) as reg:
        t0 = time.monotonic()
        card = await reg.register_card(DataCard(space="live", name="fresh-arrival"))
        acked = time.monotonic() - t0
        waits = {}
        for label, page in (("names", names), ("overview", overview), ("events", events)):
            # in the page's content (the notice in the corner says it too, at once)
            found = page.locator("main").get_by_text("fresh-arrival").first
            await found.wait_for(timeout=LIVE_LIMIT * 1000)
            waits[label] = time.monotonic() - t0
        assert max(waits.values()) < LIVE_LIMIT + acked, (acked, waits)
        assert await total.inner_text() == f"({before + 1} cards)"  # the counts too
        print(f"live: acknowledged after {acked:.3f} s, on the open pages after {waits}")
        # an open card page sees its update, and the versions page its deletion
        card_page = await _open(context, console, f"{ui_stack.url}/ui/cards/{card.uid}")
        versions = await _open(context, console, f"{ui_stack.url}/ui/r/data/live/fresh-arrival")
        card.description = "updated while you watched"
        t0 = time.monotonic()
        await reg.update_card(card)
        await card_page.get_by_text("updated while you watched").wait_for(timeout=LIVE_LIMIT * 1000)
        await reg.delete_card(card)
        await versions.locator("tr.tombstone").wait_for(timeout=LIVE_LIMIT * 1000)
        await card_page.locator("h1 .badge.del").wait_for(timeout=LIVE_LIMIT * 1000)
        assert time.monotonic() - t0 < 2 * LIVE_LIMIT + 1
    for page in (overview, names, events):
        assert await page.evaluate("window.__notReloaded") is True
    assert console.errors == []


async def test_a_card_with_attributes_its_class_refuses_still_has_a_page(
    ui_stack: Stack, seeded: Seeded, reader_token: str
) -> None:
    """The read tables keep such a card (an old or hostile writer's event): its page shows what
    has the expected shape and the raw JSON, never a server error."""
    import asyncpg
    import httpx
    import orjson

    uid = uuid.uuid4()
    conn = await asyncpg.connect(ui_stack.database_url)
    try:
        await conn.execute(
            "INSERT INTO cards (uid, registry, space, name, version, major, minor, patch, pre_key,"
            " card_type, tags, attributes, artifacts, created_at, command_id, event_offset)"
            " VALUES ($1, 'data', 'odd', 'odd-card', '1.0.0', 1, 0, 0, '~', 'DataCard',"
            " $2::jsonb, $3::jsonb, $4::jsonb, now(), $5, 999999)",
            uid, orjson.dumps(["not", "a", "dict"]).decode(),
            orjson.dumps({"feature_map": "oops", "data_splits": [1], "row_count": "x"}).decode(),
            orjson.dumps([{"path": 3}, "junk"]).decode(), uuid.uuid4(),
        )  # fmt: skip
    finally:
        await conn.close()
    async with httpx.AsyncClient(
        base_url=ui_stack.url, cookies={"opsml_ui_token": reader_token}
    ) as http:
        page = await http.get(f"/ui/cards/{uid}")
        assert page.status_code == 200, page.text[:500]
        assert "No schema recorded." in page.text, page.text[-3000:]
        assert '"feature_map": "oops"' in page.text  # the raw JSON
        for path in ("/ui/r/data/odd", "/ui/r/data/odd/odd-card"):
            listed = await http.get(path)
            assert listed.status_code == 200 and "odd-card" in listed.text, path
