"""Browser-test fixtures: one real stack (Postgres database, Tansu, worker, API) per test module,
and Debian's Chromium driven by Playwright through its executable path (Playwright's own browser
download is not reachable from these machines). Pages' console errors are collected, and each
test can write a screenshot (into OPSML_UI_SCREENSHOTS, e.g. docs/ui, or the test's tmp dir)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ADMIN_URL, Stack, _db_url
from workers import procs
from workers.dev import start_tansu

CHROMIUM = os.environ.get("OPSML_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install -y chromium;"
            " .ci/run does) or set OPSML_CHROMIUM"
        )
    return CHROMIUM


async def _admin(sql: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def module_stack(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A database, a broker, a worker and an API for a whole test module."""
    name = f"opsml_ui_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    (port,) = procs.free_ports(1)
    tansu = start_tansu(port, log_path=tmp / "tansu.out")
    stack = Stack(_db_url(name), f"127.0.0.1:{port}", tmp, extra_env=extra_env or {})
    try:
        stack.start_worker()
        stack.start_api()
        asyncio.run(stack.wait_active())
        yield stack
    finally:
        stack.stop()
        procs.stop(tansu)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            await b.close()


class Console:
    """Console errors and failed requests of the pages of one browser context."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: object) -> None:
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))  # type: ignore[attr-defined]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("OPSML_UI_SCREENSHOTS")
    out = Path(where) if where else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    return out
