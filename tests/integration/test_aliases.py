"""Aliases and the registry "as of" a moment, through the whole stack (real Postgres, Tansu, the
worker and the API processes), as a data scientist and an operator use them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import orjson
import pytest

from client import AsyncCardRegistry, ModelCard, subscribe
from registry_core.auth import split_token
from registry_core.domain.errors import (
    AliasInUse,
    AliasNotFound,
    CardNotFound,
    Forbidden,
    InvalidCommand,
    InvalidQuery,
)
from tests.conftest import Stack, running
from tests.integration.helpers import outcome, publish_raw
from workers import procs

pytestmark = pytest.mark.integration


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={**os.environ, **stack.env, "OPSML_TRACKING_URI": stack.url},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_aliases_move_keep_their_history_and_the_past_stays_readable(stack: Stack) -> None:
    """Set, move, list, look up now and as of an offset or a time, the delete guard, history
    with the actor, clear errors; a poison alias command does not stop the worker."""
    where = {"space": "demo", "name": "churn"}
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        v1, v2, v3 = [
            await reg.register_card(ModelCard(**where, tags={"stage": "dev"})) for _ in range(3)
        ]
        first = await reg.set_alias("prod", v1)
        assert (first.status, first.version) == ("alias_set", v1.version)
        assert (await reg.load_card(**where, alias="prod")).uid == v1.uid
        listed = {r.version: r.aliases for r in await reg.list_records(**where)}
        assert listed == {v1.version: ["prod"], v2.version: [], v3.version: []}
        at_first = first.event_offset
        assert at_first is not None

        # v1 changes after that moment; prod moves to v2 (by version); staging is new
        v1.tags = {"stage": "retired"}
        await reg.update_card(v1)
        moved = await reg.set_alias("prod", **where, version=v2.version)
        await reg.set_alias("staging", v3)
        assert (await reg.load_card(**where, alias="prod")).uid == v2.uid
        # "which version was prod then?" - by event offset and by time
        assert (await reg.load_card(**where, alias="prod", as_of=at_first)).uid == v1.uid
        assert first.decided_at is not None and moved.decided_at is not None
        between = first.decided_at + (moved.decided_at - first.decided_at) / 2
        assert (await reg.load_card(**where, alias="prod", as_of=between)).uid == v1.uid
        with pytest.raises(AliasNotFound, match="had no alias 'staging' at event offset"):
            await reg.load_card(**where, alias="staging", as_of=at_first)

        # the version prod points at cannot be deleted, and says why
        with pytest.raises(AliasInUse, match="alias 'prod' points at it"):
            await reg.delete_card(v2)
        await reg.delete_card(v1)  # nothing points at it any more
        now = {r.version: (r.status, r.aliases) for r in await reg.list_records(**where)}
        assert now == {v2.version: ("active", ["prod"]), v3.version: ("active", ["staging"])}
        # as of the first moment: v1 was active, tagged dev, and prod; v2 had no alias
        then = await reg.list_records(**where, as_of=at_first)
        assert [(r.version, r.status, r.tags, r.aliases) for r in then] == [
            (v3.version, "active", {"stage": "dev"}, []),
            (v2.version, "active", {"stage": "dev"}, []),
            (v1.version, "active", {"stage": "dev"}, ["prod"]),
        ]
        # ... and the latest matching version then, and one card by uid then
        assert (await reg.load_card(**where, version=v1.version, as_of=at_first)).uid == v1.uid
        old = await reg.load_card(uid=v1.uid, as_of=at_first)
        assert (old.tags, old.status) == ({"stage": "dev"}, "active")
        assert (await reg.load_card(uid=v1.uid)).status == "deleted"
        with pytest.raises(CardNotFound, match="at event offset 0"):
            await reg.load_card(uid=v3.uid, as_of=0)

        gone = await reg.remove_alias("staging", **where)
        assert (gone.status, gone.version) == ("alias_removed", v3.version)
        assert [a.alias for a in await reg.list_aliases(**where)] == ["prod"]
        assert [a.alias for a in await reg.list_aliases(**where, as_of=moved.event_offset)] == [
            "prod"
        ]
        history = await reg.alias_history(**where)
        assert [(m.alias, m.action, m.version, m.previous_version) for m in history] == [
            ("staging", "removed", v3.version, None),
            ("staging", "set", v3.version, None),
            ("prod", "set", v2.version, v1.version),
            ("prod", "set", v1.version, None),
        ]
        assert all(m.actor for m in history)  # who moved it travels with the event

        # mistakes: a clear error each, nothing sent or nothing changed
        with pytest.raises(AliasNotFound, match="no alias 'staging'"):
            await reg.remove_alias("staging", **where)
        with pytest.raises(InvalidCommand, match="alias 'Prod 2' is invalid"):
            await reg.set_alias("Prod 2", v2)
        with pytest.raises(InvalidQuery, match="neither an event offset"):
            await reg.list_records(**where, as_of="last tuesday")
        with pytest.raises(CardNotFound):
            await reg.set_alias("prod", **where, version="9.9.9")

        # a bad alias on the wire (a misbehaving client): rejected, and the worker goes on
        cid = str(uuid4())
        bad = {
            "command_id": cid, "issued_at": "2026-12-02T00:00:00Z", "type": "set_alias",
            "registry": "model", "space": "demo", "name": "churn", "alias": "x" * 65 + "\x00",
            "uid": str(v3.uid),
        }  # fmt: skip
        await publish_raw(stack.bootstrap, orjson.dumps(bad), key=b"model/demo/churn")
        answer = (await outcome(stack.url, cid)).json()
        assert answer["status"] == "rejected" and "alias" in answer["reason"]
        assert (await reg.set_alias("canary", v3)).status == "alias_set"

    # "redeploy when prod moves" (docs/events.md): a subscriber of alias_set events
    seen = []
    stream = subscribe(registry="model", space="demo", name="churn", types=["alias_set"],
                       from_="beginning", tracking_uri=stack.url)  # fmt: skip
    async with contextlib.aclosing(stream):
        async for got in stream:
            seen.append((got.event.alias, got.event.version, got.event.previous_version))
            if got.event.alias == "canary":
                break
    assert [m for m in seen if m[0] == "prod"] == [
        ("prod", v1.version, None), ("prod", v2.version, v1.version)
    ]  # fmt: skip


async def test_cli_alias_set_ls_history_rm(stack: Stack) -> None:
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        v1 = await reg.register_card(ModelCard(space="cli", name="m"))
        v2 = await reg.register_card(ModelCard(space="cli", name="m"))
        await reg.set_alias("prod", v1)
    name = ["--registry", "model", "--space", "cli", "--name", "m"]
    done = _cli(stack, "alias", "set", "prod", *name, "--version", str(v2.version))
    assert done.returncode == 0, done.stderr
    assert f"prod -> cli/m {v2.version}" in done.stdout
    listed = _cli(stack, "alias", "ls", *name, "--json")
    assert [(a["alias"], a["version"]) for a in orjson.loads(listed.stdout)] == [
        ("prod", v2.version)
    ]
    history = _cli(stack, "alias", "history", *name)
    assert f"set {v1.version} -> {v2.version}" in history.stdout
    done = _cli(stack, "alias", "rm", "prod", *name)
    assert done.returncode == 0 and f"it pointed at {v2.version}" in done.stdout


GRANT_KEY = "test-grant-key-" + "y" * 32


async def test_protected_aliases_need_admin_or_an_explicit_grant(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(
        database_url, kafka, tmp_path,
        extra_env={"OPSML_GRANT_KEY": GRANT_KEY, "OPSML_TOKEN_CACHE_SECONDS": "0"},
    )  # fmt: skip
    async with running(stack):
        made = _cli(stack, "token", "create", "--name", "root", "--scopes", "admin")
        assert made.returncode == 0, made.stderr
        tokens = {"root": made.stdout.strip()}
        auth = {"Authorization": f"Bearer {tokens['root']}"}
        async with httpx.AsyncClient(base_url=stack.url, headers=auth) as http:
            for who in ("ci", "release"):
                resp = await http.post(
                    "/api/v1/tokens", json={"name": who, "scopes": ["write"], "spaces": ["*"]}
                )
                assert resp.status_code == 201, resp.text
                tokens[who] = resp.json()["token"]
        host = stack.url.removeprefix("http://")

        def registry(who: str) -> AsyncCardRegistry:
            return AsyncCardRegistry("model", tracking_uri=f"http://{tokens[who]}@{host}")

        where = {"space": "team", "name": "churn"}
        async with registry("ci") as ci:
            card = await ci.register_card(ModelCard(**where))
            assert (await ci.set_alias("staging", card)).status == "alias_set"  # not protected
            with pytest.raises(Forbidden, match="alias 'prod' is protected"):
                await ci.set_alias("prod", card)
        async with registry("root") as root:
            assert (await root.set_alias("prod", card)).status == "alias_set"
        async with registry("ci") as ci:
            with pytest.raises(Forbidden, match="protected"):
                await ci.remove_alias("prod", **where)
            assert [a.alias for a in await ci.list_aliases(**where)] == ["prod", "staging"]

        # an explicit grant: the release token may move prod (the setting is the worker's)
        release_id = split_token(tokens["release"])[0]
        stack.start_worker(OPSML_ALIAS_GRANTS=f"prod:{release_id}")
        procs.stop(stack.workers[0])
        await stack.wait_active(epoch=2)
        async with registry("release") as release:
            assert (await release.remove_alias("prod", **where)).status == "alias_removed"
        async with registry("ci") as ci:
            with pytest.raises(Forbidden, match="protected"):
                await ci.set_alias("prod", card)
