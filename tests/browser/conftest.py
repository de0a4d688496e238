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

from registry_core.auth import parse_scopes
from registry_core.persistence import tokens
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


GRANT_KEY = "ui-test-grant-key-" + "x" * 32


@pytest.fixture(scope="package")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for every browser test, with access control on (tokens, cookie sessions)."""
    env = {"OPSML_GRANT_KEY": GRANT_KEY, "OPSML_TOKEN_CACHE_SECONDS": "0"}
    yield from module_stack(tmp_path_factory.mktemp("ui"), env)


async def make_token(stack: Stack, name: str, scopes: str) -> str:
    """A token straight in the database (what `opsml token create` does, without its start)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        token, _ = await tokens.create_token(conn, name, parse_scopes([scopes]), ["*"])
        return token
    finally:
        await conn.close()


@pytest.fixture(scope="package")
async def admin_url(ui_stack: Stack) -> str:
    """The stack's URL with an admin token in it, as a client's OPSML_TRACKING_URI."""
    token = await make_token(ui_stack, "seeder", "admin")
    return f"http://{token}@{ui_stack.url.removeprefix('http://')}"


@pytest.fixture(scope="package")
async def reader_token(ui_stack: Stack) -> str:
    return await make_token(ui_stack, "browser", "read")


@pytest.fixture(scope="package")
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
