"""Probes (issue 16): the API's /livez and /readyz (Postgres, migrations at head, Kafka
metadata), the worker's /livez, /readyz (active, or a healthy standby) and /metrics, against real
processes - and each check turning to 503 when what it checks goes away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.integration.helpers import fetch
from workers import procs
from workers.dev import start_tansu
from workers.sequencer import health

pytestmark = pytest.mark.integration


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url)


async def until(url: str, want: Any, timeout: float = 20) -> httpx.Response:
    """Poll `url` until `want(response)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            resp = await get(url)
            if want(resp):
                return resp
        except httpx.TransportError:
            resp = None
        if time.monotonic() > deadline:
            body = resp.text if resp is not None else "no answer"
            raise AssertionError(f"{url}: not as wanted after {timeout} s: {body}")
        await asyncio.sleep(0.1)


def role(resp: httpx.Response) -> str:
    return str(resp.json()["role"])


async def test_api_and_worker_probes_follow_what_they_check(
    database_url: str, tmp_path: Path
) -> None:
    (kafka_port, h0, h1) = procs.free_ports(3)
    tansu = start_tansu(kafka_port, log_path=tmp_path / "tansu.out")
    stack = Stack(database_url, f"127.0.0.1:{kafka_port}", tmp_path)
    w0, w1 = f"http://127.0.0.1:{h0}", f"http://127.0.0.1:{h1}"
    try:
        stack.start_worker(OPSML_WORKER_HEALTH_PORT=str(h0), OPSML_WORKER_HEALTH_HOST="127.0.0.1")
        stack.start_api()
        await stack.wait_active()
        # the API: alive, ready with every check named, /healthz as before
        assert (await get(f"{stack.url}/livez")).json() == {"status": "ok"}
        ready = await get(f"{stack.url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "kafka": "ok"}
        healthz = (await get(f"{stack.url}/healthz")).json()
        assert healthz["status"] == "ok" and healthz["sequencer"]["epoch"] == 1

        # the worker: active; a second one is a ready standby
        assert role(await until(f"{w0}/readyz", lambda r: r.status_code == 200)) == "active"
        assert (await get(f"{w0}/livez")).status_code == 200
        stack.start_worker(OPSML_WORKER_HEALTH_PORT=str(h1), OPSML_WORKER_HEALTH_HOST="127.0.0.1")
        standby = await until(f"{w1}/readyz", lambda r: r.status_code == 200)
        assert role(standby) == "standby"
        text = (await get(f"{w1}/metrics")).text
        assert "opsml_sequencer_standby 1.0" in text and "opsml_sequencer_active 0.0" in text

        # the active one stops: the standby takes over and says so
        procs.stop(stack.workers[0])
        await until(f"{w1}/readyz", lambda r: r.status_code == 200 and role(r) == "active")
        assert "opsml_sequencer_active 1.0" in (await get(f"{w1}/metrics")).text

        # migrations behind the image's head: the API is not ready, and says why
        (head,) = await fetch(database_url, "SELECT max(version) AS v FROM schema_migrations")
        row = await fetch(
            database_url, "DELETE FROM schema_migrations WHERE version = $1 RETURNING *", head["v"]
        )
        behind = await get(f"{stack.url}/readyz")
        assert behind.status_code == 503
        assert behind.json()["checks"]["migrations"].startswith(f"pending: [{head['v']}]")
        await fetch(
            database_url, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            row[0]["version"], row[0]["name"],
        )  # fmt: skip
        assert (await get(f"{stack.url}/readyz")).status_code == 200

        # Kafka gone: the API's readiness (within its 5 s cache) and the worker's both fail,
        # while both stay alive
        procs.stop(tansu)
        down = await until(f"{stack.url}/readyz", lambda r: r.status_code == 503, timeout=15)
        assert down.json()["checks"]["kafka"].startswith("unreachable")
        assert down.json()["checks"]["database"] == "ok"
        gone = await until(f"{w1}/readyz", lambda r: r.status_code == 503, timeout=15)
        assert gone.json()["kafka"].startswith("unreachable"), gone.text
        assert (await get(f"{w1}/livez")).status_code == 200
        assert (await get(f"{stack.url}/livez")).status_code == 200
    finally:
        stack.stop()
        procs.stop(tansu)


async def test_the_worker_health_server_answers_only_its_three_paths() -> None:
    status = health.WorkerStatus(lock_retry_seconds=0.1)
    head, _, body = (await health.respond("GET", "/readyz", status)).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b'"role":"starting"' in body
    status.lock_attempted()
    assert (await health.respond("GET", "/readyz?verbose=1", status)).startswith(b"HTTP/1.1 200")
    status.last_lock_attempt -= 60  # a standby that stopped trying is not ready
    assert (await health.respond("GET", "/readyz", status)).startswith(b"HTTP/1.1 503")
    status.set("active")
    assert (await health.respond("GET", "/readyz", status)).startswith(b"HTTP/1.1 200")
    assert (await health.respond("GET", "/nope", status)).startswith(b"HTTP/1.1 404")
    assert (await health.respond("POST", "/livez", status)).startswith(b"HTTP/1.1 405")
    metrics_head = (await health.respond("GET", "/metrics", status)).split(b"\r\n\r\n")[0]
    assert b"content-type: text/plain" in metrics_head


async def test_a_taken_health_port_is_one_clear_line(database_url: str, kafka: str) -> None:
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "worker", "--health-port", str(port),
            env={"OPSML_DATABASE_URL": database_url, "OPSML_KAFKA_BOOTSTRAP_SERVERS": kafka,
                 "OPSML_WORKER_HEALTH_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"OPSML_WORKER_HEALTH_PORT" in err and b"Traceback" not in err


async def test_probes_and_metrics_need_no_token_when_everything_else_does() -> None:
    """With access control on, the kubelet and Prometheus reach /livez, /readyz and /metrics
    without a token; any other path is refused before it reaches a route."""
    from registry_core.persistence.tokens import TokenCache
    from workers.api.guard import OPEN_PATHS, Guard

    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(app, auth_on=True, tokens=TokenCache(5), open_paths=OPEN_PATHS)
    statuses: dict[str, int] = {}
    for path in ("/livez", "/readyz", "/metrics", "/healthz", "/api/v1/cards", "/api/v1/config"):
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        app_state = SimpleNamespace(state=SimpleNamespace(pool=None))
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
                 "headers": [], "app": app_state}  # fmt: skip
        await guard(scope, receive, send)
        statuses[path] = sent[0]["status"]
    assert reached == ["/livez", "/readyz", "/metrics", "/healthz"]
    assert statuses["/api/v1/cards"] == statuses["/api/v1/config"] == 401
