"""Access control through the whole stack: tokens with scopes and spaces on the API, signed
commands checked by the worker, tokens hashed at rest, no credential in any log, and a
production bind that refuses to start open."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from client import AsyncCardRegistry, RunCard, subscribe
from registry_core.auth import GRANT_HEADER, SIGNATURE_HEADER, sign, split_token
from registry_core.domain.errors import Forbidden, Unauthenticated
from tests.conftest import Stack, running
from tests.integration.helpers import COMMANDS, dumps, fetch
from tests.support.wire import command
from workers import procs

pytestmark = pytest.mark.integration

GRANT_KEY = "test-grant-key-" + "x" * 32


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _publish(bootstrap: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(COMMANDS, value, partition=0, headers=headers)
    finally:
        await producer.stop()


async def test_tokens_scopes_spaces_and_signed_commands(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(
        database_url,
        kafka,
        tmp_path,
        extra_env={"OPSML_GRANT_KEY": GRANT_KEY, "OPSML_TOKEN_CACHE_SECONDS": "0"},
    )
    async with running(stack):
        # the first admin token comes from the operator's CLI (database access)
        made = _cli(stack, "token", "create", "--name", "root", "--scopes", "admin")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()
        split_token(admin)
        url = stack.url
        host = url.removeprefix("http://")

        async with httpx.AsyncClient(base_url=url) as anon:
            assert (await anon.get("/healthz")).status_code == 200
            # the documentation pages and exactly their assets are open; the rest needs a token
            for open_path in ("/docs", "/redoc", "/openapi.json", "/static/swagger-ui-bundle.js",
                              "/static/swagger-ui.css", "/static/redoc.standalone.js",
                              "/static/favicon-32x32.png"):  # fmt: skip
                assert (await anon.get(open_path)).status_code == 200, open_path
            assert (await anon.get("/static/README.md")).status_code == 401
            denied = await anon.get("/api/v1/cards")
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"] == "Bearer"
            assert denied.json()["error_code"] == "unauthenticated"
            for bad in ("opsml_0123456789ab_" + "a" * 43, "not-a-token"):
                got = await anon.get("/api/v1/config", headers={"Authorization": f"Bearer {bad}"})
                assert got.status_code == 401, bad

        # tokens for others, made through the API with the admin token
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {admin}"}
        ) as http:

            async def mint(name: str, scopes: list[str], spaces: list[str]) -> str:
                resp = await http.post(
                    "/api/v1/tokens", json={"name": name, "scopes": scopes, "spaces": spaces}
                )
                assert resp.status_code == 201, resp.text
                return str(resp.json()["token"])

            reader = await mint("dashboard", ["read"], ["*"])
            team_a = await mint("team-a-ci", ["write"], ["team-a"])
            listed = (await http.get("/api/v1/tokens")).json()["tokens"]
            assert {t["name"] for t in listed} == {"root", "dashboard", "team-a-ci"}
            bad = await http.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
            assert bad.status_code == 422

        # stored hashed: the table holds the sha256 of each secret, never the secret
        rows = await fetch(database_url, "SELECT * FROM opsml_auth.api_tokens")
        dumped = repr([dict(r) for r in rows])
        for tok in (admin, reader, team_a):
            tid, secret = split_token(tok)
            assert secret not in dumped
            row = next(r for r in rows if r["token_id"] == tid)
            assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()

        # read scope: reads, but cannot register, upload or manage tokens
        async with AsyncCardRegistry("run", tracking_uri=f"http://{reader}@{host}") as ro:
            assert await ro.list_cards(space="team-a") == []
            with pytest.raises(Forbidden, match="write scope"):
                await ro.register_card(RunCard(space="team-a", name="model"))
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {reader}"}
        ) as ro_http:
            put = await ro_http.put(
                f"/api/v1/staging/{uuid4()}/f.bin",
                content=b"x",
                headers={"X-Content-SHA256": hashlib.sha256(b"x").hexdigest()},
            )
            assert put.status_code == 403
            assert (await ro_http.get("/api/v1/tokens")).status_code == 403

        # write scope on team-a: registers there (token in the URI), refused elsewhere and for
        # deletes (admin), each refusal decided by the worker and answered to the client
        async with AsyncCardRegistry("run", tracking_uri=f"http://{team_a}@{host}") as rw:
            card = await rw.register_card(RunCard(space="team-a", name="model"))
            assert card.version == "1.0.0"
            with pytest.raises(Forbidden, match="team-b"):
                await rw.register_card(RunCard(space="team-b", name="model"))
            with pytest.raises(Forbidden, match="admin"):
                await rw.delete_card(card)
            cfg = await rw.config()
            assert cfg.grant is not None
            grant, signing_key = cfg.grant.grant, cfg.grant.signing_key

        # a read token may follow the event stream (subscribe authenticates to read /config)
        async for got_event in subscribe(
            tracking_uri=f"http://{reader}@{host}", from_="beginning", space="team-a"
        ):
            assert got_event.event.card.uid == card.uid  # type: ignore[union-attr]
            break

        # admin: deletes
        async with AsyncCardRegistry("run", tracking_uri=f"http://{admin}@{host}") as root:
            [stored] = await root.list_cards(space="team-a", name="model")
            await root.delete_card(stored)

        # straight to Kafka, bypassing the API: unsigned, forged and tampered commands are
        # rejected by the worker with the reason; a real signature on other bytes is not enough
        def headers(signed_bytes: bytes, key: str = signing_key) -> list[tuple[str, bytes]]:
            return [
                (GRANT_HEADER, grant.encode()),
                (SIGNATURE_HEADER, sign(key, signed_bytes).encode()),
            ]

        async def direct(value: bytes, hdrs: list[tuple[str, bytes]]) -> dict[str, object]:
            """Publish raw, then read the outcome with the admin token."""
            await _publish(kafka, value, hdrs)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
            ) as http:
                resp = await http.get(
                    f"/api/v1/commands/{orjson.loads(value)['command_id']}", params={"wait": 20}
                )
                return dict(resp.json())

        def fresh(space: str = "team-a") -> bytes:
            return dumps(command(space=space, name="direct"))

        forged, tampered = fresh(), fresh("team-b")
        cases = {
            "unsigned": (fresh(), []),
            "forged signature": (forged, headers(forged, hashlib.sha256(b"guess").hexdigest())),
            "tampered": (tampered, headers(fresh())),
        }
        for case, (value, hdrs) in cases.items():
            got = await direct(value, hdrs)
            assert got["status"] == "rejected", case
            assert got["error_code"] == "unauthenticated", (case, got)

        # a correctly signed direct command is accepted ...
        good = fresh()
        got = await direct(good, headers(good))
        assert got["status"] == "registered", got

        # ... until the token is revoked: then the API refuses it and the worker rejects the
        # commands signed under its grant
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {admin}"}
        ) as http:
            tid = split_token(team_a)[0]
            assert (await http.delete(f"/api/v1/tokens/{tid}")).status_code == 204
            assert (await http.delete(f"/api/v1/tokens/{tid}")).status_code == 404
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {team_a}"}
        ) as revoked:
            assert (await revoked.get("/api/v1/config")).status_code == 401
        late = fresh()
        got = await direct(late, headers(late))
        assert got["status"] == "rejected" and "revoked" in str(got["reason"]), got
        with pytest.raises(Unauthenticated):
            async with AsyncCardRegistry("run", tracking_uri=f"http://{team_a}@{host}") as rw:
                await rw.list_cards()

        cards = await fetch(database_url, "SELECT space, name, version, status FROM cards")
        assert sorted(tuple(r) for r in cards) == [
            ("team-a", "direct", "1.0.0", "active"),
            ("team-a", "model", "1.0.0", "deleted"),
        ]

    # no credential in any log line: tokens' secrets, the grant key, the grant's signing key
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "refused by access control" in logs  # the logs are the ones of this run
    for secret in (
        *(split_token(t)[1] for t in (admin, reader, team_a)),
        GRANT_KEY,
        signing_key,
    ):
        assert secret not in logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "OPSML_GRANT_KEY"),  # beyond loopback without a key
        ({"OPSML_AUTH": "off"}, "only on loopback"),
    ],
)
def test_the_api_refuses_to_listen_beyond_loopback_without_access_control(
    env: dict[str, str], message: str
) -> None:
    (port,) = procs.free_ports(1)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSML_")}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "api", "--host", "0.0.0.0", "--port", str(port)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
