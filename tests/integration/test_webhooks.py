"""Webhooks against a real stack (Postgres, Tansu, worker, API, `opsml webhooks run`) and real
HTTP receivers on loopback (OPSML_WEBHOOK_ALLOW_PRIVATE=true, as the setting is meant for):
every matching event delivered once in offset order with a valid Standard Webhooks signature;
filters; a failing endpoint (500s) dead-lettered after N attempts with its last answer in the
delivery log, then redelivered on request; a slow endpoint (timeouts), one with a huge response
and one that redirects (never followed) do not stall the others; secret rotation signs with two
secrets; registrations are refused for private addresses when the setting is off, and without
the admin scope; `opsml replay` verifies identical with endpoints and deliveries in place and
the delivery goes on after its switch; a second delivery process stands by (every delivery
above arrives exactly once). One stack for the whole module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from client import AsyncCardRegistry, ModelCard, RunCard
from registry_core.auth import Scope
from registry_core.persistence import db
from registry_core.persistence.tokens import create_token
from tests.conftest import ADMIN_URL, Stack, _db_url
from workers import procs
from workers.dev import start_tansu
from workers.webhooks import signing, store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


# ---- a real HTTP receiver -----------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def offset(self) -> int:
        return int(orjson.loads(self.body)["offset"])


@dataclass
class Receiver:
    """A threaded HTTP/1.1 server on loopback. `modes[path]`: ok | fail | slow | huge |
    redirect. It can be stopped and started again on the same port (a receiver that is down)."""

    port: int = 0
    modes: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    slow_s: float = 2.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def of(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stalls)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                mode = receiver.modes.get(self.path, "ok")
                if mode != "redirect":
                    with receiver.lock:
                        receiver.hits.append(
                            Hit(self.path, dict(self.headers.items()), body, time.monotonic())
                        )
                try:
                    if mode == "fail":
                        self._answer(500, b"boom: the receiver failed " + b"x" * 10_000)
                    elif mode == "slow":
                        time.sleep(receiver.slow_s)
                        self._answer(200, b"late")
                    elif mode == "redirect":
                        self.send_response(302)
                        self.send_header("location", "/redirected")
                        self.send_header("content-length", "0")
                        self.end_headers()
                    elif mode == "huge":
                        self.send_response(200)
                        self.send_header("content-length", str(200 * 1024 * 1024))
                        self.end_headers()
                        chunk = b"h" * 65536
                        for _ in range(200 * 16):
                            self.wfile.write(chunk)
                    else:
                        self._answer(200, b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _answer(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender that gave up (timeout, huge answer) resets its connection

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


# ---- one stack per module -----------------------------------------------------------------


@dataclass
class WebhookStack(Stack):
    deliverers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_deliverer(self) -> subprocess.Popen[bytes]:
        n = len(self.deliverers)
        proc = procs.spawn(
            [sys.executable, "-m", "workers.cli", "webhooks", "run"],
            env=self.env,
            log_path=self.logs / f"webhooks{n}.log",
        )
        self.deliverers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.deliverers:
            procs.stop(proc)
        super().stop()


@contextlib.asynccontextmanager
async def webhook_stack(logs: Path, **env: str) -> AsyncIterator[WebhookStack]:
    """A database, a Tansu, a worker, an API and a delivery process of their own."""
    name = f"opsml_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    (port,) = procs.free_ports(1)
    tansu = start_tansu(port, log_path=logs / "tansu.out")
    stack = WebhookStack(_db_url(name), f"127.0.0.1:{port}", logs, extra_env=env)
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        stack.start_deliverer()
        yield stack
    finally:
        stack.stop()
        procs.stop(tansu)
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def expected_offsets(dsn: str, endpoint_id: str, where: str = "true") -> list[int]:
    """The applied events (markers aside) since the endpoint's registration, in log order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_offset FROM event_log e, opsml_webhooks.endpoints w"
            " WHERE w.endpoint_id = $1 AND e.applied AND e.event_type <> 'sequencer_started'"
            f" AND e.occurred_at >= w.created_at AND {where} ORDER BY event_offset",
            endpoint_id,
        )
    finally:
        await conn.close()
    return [r["event_offset"] for r in rows]


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def check_signed(hits: list[Hit], secret: str) -> None:
    for hit in hits:
        signing.verify(secret, hit.headers, hit.body)
        assert hit.headers["webhook-id"] == orjson.loads(hit.body)["data"]["event_id"]


# ---- the tests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver(slow_s=1.5)
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
async def wstack(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> AsyncIterator[WebhookStack]:
    async with webhook_stack(
        tmp_path_factory.mktemp("webhooks"),
        OPSML_WEBHOOK_ALLOW_PRIVATE="true",
        OPSML_WEBHOOK_MAX_ATTEMPTS="3",
        OPSML_WEBHOOK_BACKOFF_BASE_SECONDS="0.05",
        OPSML_WEBHOOK_BACKOFF_MAX_SECONDS="0.2",
        OPSML_WEBHOOK_TIMEOUT_SECONDS="0.5",
        OPSML_WEBHOOK_POLL_SECONDS="0.2",
        OPSML_WEBHOOK_FETCH_MAX_WAIT_MS="20",
    ) as s:
        s.start_deliverer()  # a second one: a hot standby, never a second sender
        yield s


async def register(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await http.post("/api/v1/webhooks", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_delivery_filters_failures_dead_letters_and_redelivery(
    wstack: WebhookStack, receiver: Receiver
) -> None:
    receiver.modes.update({"/fail": "fail", "/slow": "slow", "/huge": "huge",
                           "/redirect": "redirect"})  # fmt: skip
    async with httpx.AsyncClient(base_url=wstack.url, timeout=30) as http:
        everything = await register(http, url=receiver.url("/all"), description="all events")
        models = await register(
            http, url=receiver.url("/models"), registry="model", event_types=["card_registered"]
        )
        failing = await register(http, url=receiver.url("/fail"))
        slow = await register(http, url=receiver.url("/slow"))
        huge = await register(http, url=receiver.url("/huge"), name="exp-1")
        redirect = await register(http, url=receiver.url("/redirect"), name="exp-0")
        assert everything["secret"].startswith("whsec_")
        listed = (await http.get("/api/v1/webhooks")).json()["endpoints"]
        assert len(listed) == 6 and all("secret" not in e for e in listed)

        t0 = time.monotonic()
        async with (
            AsyncCardRegistry("run", tracking_uri=wstack.url) as runs,
            AsyncCardRegistry("model", tracking_uri=wstack.url) as model,
        ):
            for i in range(12):
                await runs.register_card(RunCard(space="hooks", name=f"exp-{i % 3}"))
            m = await model.register_card(ModelCard(space="hooks", name="churn"))
            m.description = "updated"
            await model.update_card(m)
        dsn = wstack.database_url
        want_all = await expected_offsets(dsn, everything["endpoint_id"])
        assert len(want_all) == 14  # 13 registrations and an update

        # the healthy endpoint gets everything, in order, signed, while /slow is still behind
        async def all_in() -> bool:
            return [h.offset for h in receiver.of("/all")] == want_all

        await wait_for(all_in, 15, "every event at /all")
        took = time.monotonic() - t0
        check_signed(receiver.of("/all"), everything["secret"])
        slow_done = (
            await http.get(f"/api/v1/webhooks/{slow['endpoint_id']}/deliveries",
                           params={"status": "pending"})
        ).json()["deliveries"]  # fmt: skip
        assert slow_done, "the slow endpoint should still be behind (each try takes 0.5 s)"

        # filters: registrations of the model registry only
        want_models = await expected_offsets(
            dsn, models["endpoint_id"],
            "e.event_type = 'card_registered' AND e.payload::jsonb->'card'->>'registry' = 'model'",
        )  # fmt: skip
        assert len(want_models) == 1

        async def models_in() -> bool:
            return [h.offset for h in receiver.of("/models")] == want_models

        await wait_for(models_in, 10, "the model registration at /models")

        # 500s: three attempts each, then dead-lettered with the last answer, in event order
        async def all_dead() -> bool:
            got = (
                await http.get(f"/api/v1/webhooks/{failing['endpoint_id']}/deliveries",
                               params={"status": "dead"})
            ).json()["deliveries"]  # fmt: skip
            return len(got) == len(want_all)

        await wait_for(all_dead, 30, "every /fail delivery dead-lettered")
        seen = (await http.get(f"/api/v1/webhooks/{failing['endpoint_id']}")).json()
        assert (seen["pending"], seen["dead"]) == (0, len(want_all))
        first = (
            await http.get(f"/api/v1/webhooks/{failing['endpoint_id']}/deliveries/{want_all[0]}")
        ).json()
        assert first["status"] == "dead" and first["attempts"] == 3
        assert first["last_status_code"] == 500
        assert first["last_response"].startswith("boom: the receiver failed")
        assert len(first["last_response"]) <= 4096
        assert [a["status_code"] for a in first["attempt_log"]] == [500, 500, 500]
        assert all(a["latency_ms"] > 0 for a in first["attempt_log"])
        fail_hits = [h.offset for h in receiver.of("/fail")]
        assert fail_hits == sorted(fail_hits)  # per-endpoint order, retries included
        assert len(fail_hits) == 3 * len(want_all)

        # redelivery on request, once the receiver is fixed: every dead one, in order
        receiver.modes["/fail"] = "ok"
        before = len(receiver.of("/fail"))
        resp = await http.post(f"/api/v1/webhooks/{failing['endpoint_id']}/redeliver-dead")
        assert resp.status_code == 202 and resp.json()["offsets"] == want_all

        async def redelivered() -> bool:
            return [h.offset for h in receiver.of("/fail")[before:]] == want_all

        await wait_for(redelivered, 15, "the redelivered events at /fail")
        check_signed(receiver.of("/fail"), failing["secret"])

        # a huge response is cut at the limit (the delivery counts: it was a 200)
        want_huge = await expected_offsets(
            dsn, huge["endpoint_id"], "e.payload::jsonb->'card'->>'name' = 'exp-1'"
        )

        async def huge_done() -> bool:
            got = (
                await http.get(f"/api/v1/webhooks/{huge['endpoint_id']}/deliveries",
                               params={"status": "delivered"})
            ).json()["deliveries"]  # fmt: skip
            return [d["event_offset"] for d in got] == want_huge

        await wait_for(huge_done, 15, "the /huge deliveries")
        one = (
            await http.get(f"/api/v1/webhooks/{huge['endpoint_id']}/deliveries/{want_huge[0]}")
        ).json()
        assert one["last_status_code"] == 200 and len(one["last_response"]) <= 4096
        assert one["last_latency_ms"] < 2000  # not the 200 MB

        # a redirect is never followed: an error, then dead
        async def redirect_dead() -> bool:
            got = (
                await http.get(f"/api/v1/webhooks/{redirect['endpoint_id']}/deliveries",
                               params={"status": "dead"})
            ).json()["deliveries"]  # fmt: skip
            return len(got) == 4  # exp-0: 4 registrations

        await wait_for(redirect_dead, 15, "the /redirect deliveries dead")
        assert receiver.of("/redirected") == []
        d = (await http.get(f"/api/v1/webhooks/{redirect['endpoint_id']}/deliveries")).json()
        assert "not followed" in d["deliveries"][0]["last_error"]
        # deleting an endpoint in the middle of an attempt stops its lane, not the process
        resp = await http.delete(f"/api/v1/webhooks/{slow['endpoint_id']}")
        assert resp.status_code == 204
        await asyncio.sleep(1.0)  # > one attempt (0.5 s) and one poll (0.2 s)
        assert all(p.poll() is None for p in wstack.deliverers)
        logs = "".join((wstack.logs / f"webhooks{n}.log").read_text() for n in (0, 1))
        assert "restarting" not in logs
        print(f"/all complete {took:.2f} s after the first registration")
        standby = [(wstack.logs / f"webhooks{n}.log").read_text() for n in (0, 1)]
        assert sum("another delivery process is active; standing by" in t for t in standby) == 1


async def test_rotation_signs_with_both_secrets(wstack: WebhookStack, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=wstack.url, timeout=30) as http:
        ep = await register(http, url=receiver.url("/rotating"))
        rotated = (await http.post(f"/api/v1/webhooks/{ep['endpoint_id']}/rotate-secret")).json()
        assert rotated["secret"] != ep["secret"] and rotated["previous_secret_expires_at"]
        async with AsyncCardRegistry("run", tracking_uri=wstack.url) as runs:
            await runs.register_card(RunCard(space="hooks", name="rot"))

        async def arrived() -> bool:
            return len(receiver.of("/rotating")) == 1

        await wait_for(arrived, 10, "the delivery at /rotating")
        (hit,) = receiver.of("/rotating")
        assert len(hit.headers["webhook-signature"].split()) == 2
        signing.verify(ep["secret"], hit.headers, hit.body)
        signing.verify(rotated["secret"], hit.headers, hit.body)
        # no grace: the old secret stops signing
        await http.post(f"/api/v1/webhooks/{ep['endpoint_id']}/rotate-secret",
                        params={"grace_hours": 0})  # fmt: skip
        resp = await http.patch(f"/api/v1/webhooks/{ep['endpoint_id']}", json={"enabled": False})
        assert resp.status_code == 200 and resp.json()["enabled"] is False


async def test_registration_is_checked(wstack: WebhookStack) -> None:
    async with httpx.AsyncClient(base_url=wstack.url, timeout=30) as http:
        for body, why in [
            ({"url": "ftp://127.0.0.1/x"}, "only http and https"),
            ({"url": "http://127.0.0.1/x", "event_types": ["nope"]}, "unknown type"),
            ({"url": "http://127.0.0.1/x", "space": "Bad Space"}, "space"),
            ({"url": "http://127.0.0.1/x", "secret": "mine"}, ""),
        ]:
            resp = await http.post("/api/v1/webhooks", json=body)
            assert resp.status_code == 422, resp.text
            assert why in resp.text
        missing = "/api/v1/webhooks/wh_000000000000"
        assert (await http.get(missing)).status_code == 404
        assert (await http.delete(missing)).status_code == 404
        assert (await http.post(f"{missing}/deliveries/1/redeliver")).status_code == 404
        assert (await http.get(f"{missing}/deliveries")).status_code == 404
        assert (await http.get("/api/v1/webhooks/wh_nope")).status_code == 422
        assert (await http.get(f"{missing}/deliveries/{2**63}")).status_code == 422
        resp = await http.post("/api/v1/webhooks", json={"url": "http://127.0.0.1/x",
                                                         "description": "a\u0000b"})  # fmt: skip
        assert resp.status_code == 422 and "NUL" in resp.text


async def test_replay_verifies_identical_and_delivery_goes_on(
    wstack: WebhookStack, receiver: Receiver
) -> None:
    """Endpoints, deliveries and the position live in opsml_webhooks, which a replay neither
    rebuilds nor compares nor swaps: it verifies identical and switches, and afterwards the
    same endpoints keep receiving through the running API and delivery process."""
    async with httpx.AsyncClient(base_url=wstack.url, timeout=30) as http:
        ep = await register(http, url=receiver.url("/after-replay"))
        async with AsyncCardRegistry("run", tracking_uri=wstack.url) as runs:
            await runs.register_card(RunCard(space="hooks", name="before-replay"))

        async def one() -> bool:
            return len(receiver.of("/after-replay")) == 1

        await wait_for(one, 10, "the delivery before the replay")
        conn = await db.connect(wstack.database_url)
        count = "SELECT count(*) FROM opsml_webhooks.{}"
        before = {t: await conn.fetchval(count.format(t)) for t in ("endpoints", "deliveries")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "replay", env={**os.environ, **wstack.env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
        assert proc.returncode == 0, out
        assert "identical" in out.lower(), out
        after = {t: await conn.fetchval(count.format(t)) for t in ("endpoints", "deliveries")}
        assert after == before and before["endpoints"] >= 7
        old = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'opsml_old_%'"
        )
        assert old == 1  # it switched
        await conn.close()
        async with AsyncCardRegistry("run", tracking_uri=wstack.url) as runs:
            await runs.register_card(RunCard(space="hooks", name="after-replay"))

        async def two() -> bool:
            return len(receiver.of("/after-replay")) == 2

        await wait_for(two, 10, "the delivery after the replay")
        hits = receiver.of("/after-replay")
        assert hits[0].offset < hits[1].offset
        check_signed(hits, ep["secret"])


async def test_admin_scope_and_private_addresses(wstack: WebhookStack, tmp_path: Path) -> None:
    """With access control on (a second API on the module's database, with a grant key), a
    read, write or narrow admin token is refused and an admin token on every space may
    register; with OPSML_WEBHOOK_ALLOW_PRIVATE off, loopback and metadata addresses are not."""
    env = {k: v for k, v in wstack.extra_env.items() if k != "OPSML_WEBHOOK_ALLOW_PRIVATE"}
    api = Stack(wstack.database_url, wstack.bootstrap, tmp_path,
                extra_env={**env, "OPSML_GRANT_KEY": "k" * 40})  # fmt: skip
    try:
        conn = await db.connect(wstack.database_url)
        reader, _ = await create_token(conn, "r", frozenset({Scope.READ}), ["*"])
        writer, _ = await create_token(conn, "w", frozenset({Scope.WRITE}), ["*"])
        boss, _ = await create_token(conn, "a", frozenset({Scope.ADMIN}), ["*"])
        narrow, _ = await create_token(conn, "n", frozenset({Scope.ADMIN}), ["team-a"])
        await conn.close()
        api.start_api()
        body = {"url": "http://127.0.0.1:9/hook"}
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            assert (await http.post("/api/v1/webhooks", json=body)).status_code == 401
            for token in (reader, writer, narrow):
                h = {"authorization": f"Bearer {token}"}
                resp = await http.post("/api/v1/webhooks", json=body, headers=h)
                assert resp.status_code == 403, resp.text
                assert (await http.get("/api/v1/webhooks", headers=h)).status_code == 403
            h = {"authorization": f"Bearer {boss}"}
            resp = await http.post("/api/v1/webhooks", json=body, headers=h)
            assert resp.status_code == 422 and "ALLOW_PRIVATE" in resp.text
            resp = await http.post(
                "/api/v1/webhooks", json={"url": "http://[::ffff:169.254.169.254]/"}, headers=h
            )
            assert resp.status_code == 422 and "169.254.169.254" in resp.text
            assert (await http.get("/api/v1/webhooks", headers=h)).status_code == 200
    finally:
        api.stop()


def docs_receiver(port: int) -> str:
    """The receiver of docs/events.md's "redeploy when `prod` moves", as published, on `port`."""
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    after = text[text.index("**Example: redeploy when `prod` moves.**") :]
    code = after[after.index("```python\n") + 10 :]
    code = code[: code.index("```")]
    assert 'HTTPServer(("0.0.0.0", 8080), Hook)' in code
    return code.replace('("0.0.0.0", 8080)', f'("127.0.0.1", {port})')


async def test_alias_filter_and_the_documented_receiver(
    wstack: WebhookStack, tmp_path: Path
) -> None:
    """An endpoint filtered on `alias_set` of `prod` gets exactly those events; the docs'
    example receiver verifies them and redeploys each version once (a redelivery of the same
    event id is skipped)."""
    (port,) = procs.free_ports(1)
    script = tmp_path / "receiver.py"
    script.write_text(docs_receiver(port))
    async with httpx.AsyncClient(base_url=wstack.url, timeout=30) as http:
        ep = await register(
            http, url=f"http://127.0.0.1:{port}/hook", event_types=["alias_set"],
            registry="model", alias="prod",
        )  # fmt: skip
        out = tmp_path / "receiver.out"
        proc = procs.spawn(
            [sys.executable, "-u", str(script)],
            env={"WEBHOOK_SECRET": ep["secret"]},
            log_path=out,
        )
        try:
            procs.wait_port("127.0.0.1", port, 20, proc)
            async with AsyncCardRegistry("model", tracking_uri=wstack.url) as model:
                v1 = await model.register_card(ModelCard(space="hooks", name="ranker"))
                v2 = await model.register_card(ModelCard(space="hooks", name="ranker"))
                await model.set_alias("staging", v1)  # another alias: not sent
                await model.set_alias("prod", v1)
                await model.set_alias("prod", v2)

            async def two() -> bool:
                return out.read_text().count("deploying") == 2

            await wait_for(two, 15, "two deployments by the documented receiver")
            offsets = (await http.get(f"/api/v1/webhooks/{ep['endpoint_id']}/deliveries")).json()[
                "deliveries"
            ]
            assert [d["status"] for d in offsets] == ["delivered", "delivered"]
            assert [d["last_status_code"] for d in offsets] == [204, 204]
            resp = await http.post(
                f"/api/v1/webhooks/{ep['endpoint_id']}/deliveries/"
                f"{offsets[0]['event_offset']}/redeliver"
            )
            assert resp.status_code == 202

            async def resent() -> bool:
                got = (
                    await http.get(
                        f"/api/v1/webhooks/{ep['endpoint_id']}/deliveries/"
                        f"{offsets[0]['event_offset']}"
                    )
                ).json()
                return got["attempts"] == 2 and got["status"] == "delivered"

            await wait_for(resent, 10, "the redelivery")
            lines = [x for x in out.read_text().splitlines() if x.startswith("deploying")]
            assert lines == [f"deploying ranker {v1.version}", f"deploying ranker {v2.version}"]
        finally:
            procs.stop(proc)


async def test_retention_prunes_only_delivered(wstack: WebhookStack) -> None:
    conn = await db.connect(wstack.database_url)
    try:
        count = "SELECT status, count(*) FROM opsml_webhooks.deliveries GROUP BY status"
        before = dict(list(await conn.fetch(count)))
        assert before["delivered"] > 0 and before["dead"] > 0
        assert await store.prune_delivered(conn, timedelta(days=1)) == 0
        assert await store.prune_delivered(conn, timedelta(0)) == before["delivered"]
        after = dict(list(await conn.fetch(count)))
        assert "delivered" not in after and after["dead"] == before["dead"]
        orphans = await conn.fetchval(
            "SELECT count(*) FROM opsml_webhooks.attempts a WHERE NOT EXISTS (SELECT 1 FROM"
            " opsml_webhooks.deliveries d WHERE d.endpoint_id = a.endpoint_id"
            " AND d.event_offset = a.event_offset)"
        )
        assert orphans == 0
    finally:
        await conn.close()


async def test_the_address_is_checked_again_at_delivery(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL that passed registration but now resolves inside the network (DNS rebinding, or a
    setting turned off) is refused at the attempt itself: nothing reaches the receiver. A name
    with several (checked) addresses is tried on the next when one refuses the connection."""
    import ipaddress

    from workers.webhooks import sender as sender_module
    from workers.webhooks.sender import Sender

    sender = Sender(timeout_s=2, max_response_bytes=100, allow_private=False)
    try:
        for url in (receiver.url("/rebound"), f"http://localhost:{receiver.port}/rebound"):
            got = await sender.send(url, {"webhook-id": "x"}, b"{}")
            assert got.code is None and not got.ok
            assert got.error is not None and got.error.startswith("refused:")
        assert receiver.of("/rebound") == []
    finally:
        await sender.aclose()
    allowed = Sender(timeout_s=2, max_response_bytes=100, allow_private=True)
    try:
        got = await allowed.send(f"http://localhost:{receiver.port}/rebound", {}, b'{"offset": 1}')
        assert got.ok and got.code == 200
        (hit,) = receiver.of("/rebound")
        host = {k.lower(): v for k, v in hit.headers.items()}["host"]
        assert host == f"localhost:{receiver.port}"  # the URL's host, not the IP
    finally:
        await allowed.aclose()

    async def two(target: object, *, allow_private: bool) -> list[object]:
        # nothing listens on ::1 at this port (the receiver is on 127.0.0.1 only)
        return [ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(sender_module.ssrf, "resolve", two)
    allowed = Sender(timeout_s=2, max_response_bytes=100, allow_private=True)
    try:
        got = await allowed.send(f"http://hooks.test:{receiver.port}/rebound", {}, b'{"offset": 2}')
        assert got.ok, got.error
        assert len(receiver.of("/rebound")) == 2
    finally:
        await allowed.aclose()


async def test_an_attempt_on_a_deleted_endpoint_ends_quietly(
    wstack: WebhookStack, receiver: Receiver
) -> None:
    """The endpoint is deleted while its attempt is in flight: the attempt's record finds no
    delivery (a foreign-key refusal), and the lane says stop instead of raising (which would
    restart the whole delivery process)."""
    from workers.webhooks.lanes import Lane
    from workers.webhooks.policy import Backoff
    from workers.webhooks.sender import Sender

    pool = await db.create_pool(wstack.database_url, min_size=1, max_size=2)
    sender = Sender(timeout_s=2, max_response_bytes=100, allow_private=True)
    try:
        row = await store.create_endpoint(
            pool, url=receiver.url("/gone"), description=None, event_types=[], registry=None,
            space=None, name=None, alias=None, enabled=False, created_by="test",
        )  # fmt: skip
        body = orjson.dumps({"offset": 10**12, "data": {}}).decode()
        async with pool.acquire() as conn:
            position, epoch = await store.cursor(conn) or (0, 0)
            one = [(row["endpoint_id"], 10**12, uuid.uuid4(), "card_registered", body)]
            assert await store.fan_out(conn, lambda _: one, position, epoch) == one
        (d,) = await store.next_deliveries(pool, row["endpoint_id"], 5)
        assert await store.delete_endpoint(pool, row["endpoint_id"])
        lane = Lane(row, pool, sender, Backoff(), 1.0)
        assert await lane.attempt(d) is False
        assert len(receiver.of("/gone")) == 1  # it was sent; only its record had nowhere to go
    finally:
        await sender.aclose()
        await pool.close()


async def test_a_registration_waits_for_a_fan_out_in_progress(wstack: WebhookStack) -> None:
    """While a fan-out transaction holds the endpoints' share lock, a registration waits, and
    its created_at is taken after the fan-out committed: the events that fan-out matched without
    the new endpoint all occurred before the endpoint's created_at."""
    fan = await db.connect(wstack.database_url)
    reg = await db.connect(wstack.database_url)
    try:
        tx = fan.transaction()
        await tx.start()
        await fan.execute(db.Q["wh_lock_endpoints"])
        task = asyncio.create_task(
            store.create_endpoint(
                reg, url="http://127.0.0.1:9/w", description=None, event_types=[],
                registry=None, space=None, name=None, alias=None, enabled=False, created_by="t",
            )
        )  # fmt: skip
        await asyncio.sleep(0.5)
        assert not task.done()  # waiting for the fan-out
        committed_at = await fan.fetchval("SELECT clock_timestamp()")
        await tx.commit()
        row = await asyncio.wait_for(task, 10)
        assert row["created_at"] > committed_at
        assert await store.delete_endpoint(reg, row["endpoint_id"])
    finally:
        await fan.close()
        await reg.close()


def test_the_operator_commands(wstack: WebhookStack) -> None:
    """`opsml webhooks ls` counts each endpoint's pending and dead deliveries (one command: each
    costs a Python start; `add`'s checks are the API's, tested above)."""

    def opsml(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", "webhooks", *args],
            env={**os.environ, **wstack.env, "COLUMNS": "250", **env},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    listed = opsml("ls")
    assert listed.returncode == 0, listed.stderr
    # the /redirect endpoint of the first test: exp-0's 4 registrations, all dead
    line = next(x for x in listed.stdout.splitlines() if "/redirect " in x or "/redirect│" in x)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    assert cells[-2:] == ["0", "4"], line
    assert cells[0].startswith("wh_") and len(cells[0]) == 15
