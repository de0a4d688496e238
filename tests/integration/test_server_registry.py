"""The server registry end to end (issue 17): `OPSML_TRACKING_URI` set to the registry's Postgres
URI is the only setting a process inside the perimeter needs - the worker records the rest in
the database at its start. The transport's contract (registration, queries, updates, deletes,
lineage, artifacts, errors) runs for both modes in test_transport_contract.py; this file holds
what only the server mode has: the settings row, the sync client and subscribe() on the
variable alone, a database without a worker's settings, and signed commands."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from uuid import UUID

import pytest

from client import AsyncCardRegistry, CardRegistry, ModelCard, RunCard, subscribe
from client.errors import RegistryUnavailable
from client.server_transport import ServerTransport
from registry_core.auth import Scope
from registry_core.domain.errors import Forbidden, Unauthenticated
from registry_core.persistence import db
from registry_core.persistence.tokens import create_token
from tests.conftest import S3, Stack, running
from tests.integration.helpers import dumps, fetch, publish_raw
from tests.support.wire import command
from workers import procs

pytestmark = pytest.mark.integration

GRANT_KEY = "server-registry-grant-key-" + "k" * 32


async def test_the_database_uri_is_the_only_setting(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rows = await fetch(stack.database_url, "SELECT * FROM opsml_server.settings")
    assert len(rows) == 1
    row = rows[0]
    assert (row["worker_name"], row["kafka_bootstrap_servers"]) == ("sequencer", stack.bootstrap)
    assert (row["commands_topic"], row["events_topic"]) == ("opsml.commands", "opsml.events")
    assert row["storage_uri"] == str(stack.logs / "artifacts") and row["auth"] is False

    # nothing but OPSML_TRACKING_URI in this process's environment (the test's own shell may
    # carry other OPSML_ settings: none of them may be needed)
    for key in list(os.environ):
        if key.startswith("OPSML_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OPSML_TRACKING_URI", stack.database_url)
    reg = CardRegistry("model")
    try:
        assert reg._async.tracking_uri == stack.database_url.replace("postgres@", "")
        (tmp_path / "w.bin").write_bytes(b"weights" * 1000)
        card = ModelCard(space="srv", name="m", tags={"k": "v"})
        card.add_artifact(tmp_path / "w.bin")
        reg.register_card(card)
        assert card.version == "1.0.0"
        # the HTTP API sees what the server registry wrote, and the other way round
        import httpx

        async with httpx.AsyncClient(base_url=stack.url) as http:
            got = (await http.get(f"/api/v1/cards/{card.uid}")).json()
        assert (got["name"], got["tags"], got["artifacts"][0]["path"]) == ("m", {"k": "v"}, "w.bin")
        via_http = AsyncCardRegistry("model", tracking_uri=stack.url)
        try:
            second = await via_http.register_card(ModelCard(space="srv", name="m"))
        finally:
            await via_http.close()
        assert [c.version for c in reg.list_cards(space="srv", name="m")] == ["1.1.0", "1.0.0"]
        loaded = reg.load_card(uid=card.uid)
        paths = reg.download_artifacts(loaded, tmp_path / "out")
        assert [p.read_bytes() for p in paths] == [b"weights" * 1000]
        assert second.uid is not None
    finally:
        reg.close()


async def test_subscribe_and_outcome_waits_on_the_database_uri(stack: Stack) -> None:
    ready = asyncio.Event()
    got: list[str] = []

    async def follow() -> None:
        async for ev in subscribe(
            tracking_uri=stack.database_url, from_="latest", fetch_max_wait_ms=20,
            on_ready=lambda _offset: ready.set(),
        ):  # fmt: skip
            got.append(ev.type)
            return

    task = asyncio.create_task(follow())
    await asyncio.wait_for(ready.wait(), 20)
    async with AsyncCardRegistry("run", tracking_uri=stack.database_url) as reg:
        await reg.register_card(RunCard(space="sub", name="r"))
    await asyncio.wait_for(task, 20)
    assert got == ["card_registered"]

    # A wait in progress ends when the worker's NOTIFY arrives; a listener connection the server
    # dropped is reconnected and the waits read again, so nothing is missed.
    t = ServerTransport(stack.database_url)
    try:
        await t.connect()
        for kill_listener in (False, True):
            body = command(name=f"notify-{int(kill_listener)}")
            waiter = asyncio.create_task(t.wait_for(UUID(body["command_id"]), 25))
            await asyncio.sleep(0.3)
            assert not waiter.done()
            if kill_listener:
                pid = (await t.waiters()).conn.get_server_pid()
                rows = await fetch(stack.database_url, "SELECT pg_terminate_backend($1)", pid)
                assert rows[0][0] is True
                await asyncio.sleep(0.3)
            t0 = time.monotonic()
            await publish_raw(stack.bootstrap, dumps(body))
            out = await waiter
            assert out.status == "registered" and out.card is not None
            assert time.monotonic() - t0 < 5
        assert (await t.waiters()).conn.get_server_pid() != pid  # a new listener
    finally:
        await t.aclose()


async def test_a_database_without_a_workers_settings(database_url: str) -> None:
    """No worker has started on it (here: not even migrated, then migrated): a clear error
    saying what to do, before anything is published."""
    for migrated in (False, True):
        if migrated:
            conn = await db.connect(database_url)
            try:
                await db.migrate(conn)
            finally:
                await conn.close()
        reg = AsyncCardRegistry("run", tracking_uri=database_url)
        try:
            with pytest.raises(RegistryUnavailable, match=r"start the registry's worker"):
                await reg.register_card(RunCard(space="x", name="y"))
            with pytest.raises(RegistryUnavailable, match=r"holds no registry settings"):
                await reg.list_cards()
        finally:
            await reg.close()
    # no database at all: one line naming the address, the password not in it
    (port,) = procs.free_ports(1)
    gone = f"postgresql://someone:s3cret@127.0.0.1:{port}/opsml"
    t = ServerTransport(gone)
    try:
        with pytest.raises(RegistryUnavailable, match=f"127.0.0.1:{port}/opsml") as err:
            await t.get_card(__import__("uuid").uuid4())
        assert "s3cret" not in str(err.value)
    finally:
        await t.aclose()


async def test_commands_are_signed_when_the_grant_key_is_set(
    database_url: str, kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack(
        database_url, kafka, tmp_path,
        extra_env={"OPSML_GRANT_KEY": GRANT_KEY, "OPSML_TOKEN_CACHE_SECONDS": "0"},
    )  # fmt: skip
    async with running(stack):
        conn = await db.connect(database_url)  # as `opsml token create` does
        try:
            writer, _ = await create_token(conn, "pipeline", frozenset({Scope.WRITE}), ["*"])
            reader, _ = await create_token(conn, "viewer", frozenset({Scope.READ}), ["*"])
        finally:
            await conn.close()
        row = (await fetch(database_url, "SELECT auth FROM opsml_server.settings"))[0]
        assert row["auth"] is True

        async def register(name: str) -> RunCard:
            async with AsyncCardRegistry("run", tracking_uri=database_url) as reg:
                return await reg.register_card(RunCard(space="sig", name=name))

        # no grant key, or no token, or a read-only one: refused here, nothing is published
        for env in ({}, {"OPSML_GRANT_KEY": GRANT_KEY}, {"OPSML_TOKEN": writer},
                    {"OPSML_GRANT_KEY": GRANT_KEY, "OPSML_TOKEN": reader}):  # fmt: skip
            for key in ("OPSML_GRANT_KEY", "OPSML_TOKEN"):
                monkeypatch.delenv(key, raising=False)
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            with pytest.raises(Forbidden, match="OPSML_GRANT_KEY and a token"):
                await register("refused")
        # the registry's key and a write token: signed as the API's grant signs
        monkeypatch.setenv("OPSML_TOKEN", writer)
        monkeypatch.setenv("OPSML_GRANT_KEY", GRANT_KEY)
        assert (await register("ok")).version == "1.0.0"
        # another key: the worker refuses the signature
        monkeypatch.setenv("OPSML_GRANT_KEY", "another-key-" + "z" * 32)
        with pytest.raises(Unauthenticated, match="grant is not valid"):
            await register("forged")
        # an unknown token is refused before anything is published
        monkeypatch.setenv("OPSML_GRANT_KEY", GRANT_KEY)
        monkeypatch.setenv("OPSML_TOKEN", writer[:-4] + "AAAA")
        with pytest.raises(Unauthenticated, match="unknown, revoked or expired"):
            await register("bad-token")
        names = await fetch(database_url, "SELECT name FROM cards WHERE space = 'sig'")
        assert [r["name"] for r in names] == ["ok"]


async def test_files_on_s3_with_this_processs_own_credentials(
    database_url: str, kafka: str, tmp_path: Path, s3_server: S3, s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The store's location comes from the settings row, its credentials never do: without
    any, a clear error (and nothing registered); with this process's own, staged and read back."""
    async with running(Stack(database_url, kafka, tmp_path, extra_env=s3_server.env(s3_bucket))):
        for key in list(os.environ):
            if key.startswith(("AWS_", "OPSML_")):
                monkeypatch.delenv(key)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile either
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        (tmp_path / "w.bin").write_bytes(os.urandom(300_000))
        async with AsyncCardRegistry("model", tracking_uri=database_url) as reg:
            card = ModelCard(space="s3", name="m")
            card.add_artifact(tmp_path / "w.bin")
            with pytest.raises(RegistryUnavailable, match="AWS_ACCESS_KEY_ID"):
                await reg.register_card(card)
            assert await reg.list_cards(space="s3") == []
        for key, value in s3_server.env(s3_bucket).items():
            if key.startswith("AWS_"):
                monkeypatch.setenv(key, value)
        async with AsyncCardRegistry("model", tracking_uri=database_url) as reg:
            card = ModelCard(space="s3", name="m")
            card.add_artifact(tmp_path / "w.bin")
            await reg.register_card(card)
            paths = await reg.download_artifacts(card, tmp_path / "out")
        assert [p.read_bytes() for p in paths] == [(tmp_path / "w.bin").read_bytes()]
