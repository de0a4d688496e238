"""The worker's own small HTTP server: `/livez`, `/readyz` and `/metrics` for probes and
Prometheus (on OPSML_WORKER_HEALTH_PORT; docs/operations.md).

The worker has no web framework, and these three answers need none: a few lines of HTTP/1.1 on
`asyncio.start_server`, one request per connection. It runs on the worker's event loop, so a
loop blocked for longer than a probe's timeout fails `/livez` - which is what that probe is for.

Readiness follows the role the sequencer modules report in `STATUS`: an active sequencer (lock
held, caught up) is ready, and so is a hot standby whose last lock attempt - a round trip on its
Postgres connection - is recent; either needs the Kafka cluster's metadata to be readable
(`KafkaProbe`: an idle sequencer does not notice a broker that went away, its fetches just come
back empty). A worker still starting, or one whose standby loop has stopped trying, is not.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog
from aiokafka import AIOKafkaClient

from registry_core import metrics

log = structlog.get_logger("opsml.worker.health")

Role = Literal["starting", "standby", "active", "stopped"]
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192


@dataclass
class WorkerStatus:
    """What this worker is doing, as the sequencer modules report it (one per process)."""

    role: Role = "starting"
    since: float = field(default_factory=time.monotonic)
    last_lock_attempt: float = 0.0  # the standby's last try_advisory_lock round trip
    lock_retry_seconds: float = 1.0

    def set(self, role: Role) -> None:
        if role != self.role:
            self.role, self.since = role, time.monotonic()
        metrics.set_role(active=role == "active", standby=role == "standby")

    def lock_attempted(self) -> None:
        self.last_lock_attempt = time.monotonic()
        if self.role != "standby":
            self.set("standby")

    def readiness(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        body: dict[str, object] = {"role": self.role, "for_seconds": round(now - self.since, 1)}
        if self.role == "active":
            return True, body
        if self.role == "standby":
            # a few missed attempts are tolerated (a slow query); then the standby is stale
            age = now - self.last_lock_attempt
            body["last_lock_attempt_seconds_ago"] = round(age, 1)
            return age <= max(5.0, 3 * self.lock_retry_seconds + 2), body
        return False, body


STATUS = WorkerStatus()


class KafkaProbe:
    """Can the cluster's metadata (with the registry's topics) be read? One long-lived client;
    the answer is kept for `ttl` seconds so that probes do not become load on the brokers."""

    def __init__(
        self, bootstrap: str, topics: set[str], client_kwargs: dict[str, Any], *, ttl: float = 5
    ) -> None:
        self.bootstrap, self.topics, self.kwargs, self.ttl = bootstrap, topics, client_kwargs, ttl
        self.client: AIOKafkaClient | None = None
        self.checked_at = -ttl - 1.0
        self.result = "unknown"
        self.timeout = 2.0

    async def check(self) -> str:
        """ "ok", or what is wrong, in a few words."""
        now = time.monotonic()
        if now - self.checked_at < self.ttl:
            return self.result
        try:
            async with asyncio.timeout(self.timeout):
                if self.client is None:
                    self.client = AIOKafkaClient(
                        bootstrap_servers=self.bootstrap,
                        request_timeout_ms=int(self.timeout * 1000),
                        **self.kwargs,
                    )
                    await self.client.bootstrap()
                md = await self.client.fetch_all_metadata()
            missing = self.topics - set(md.topics())
            self.result = "ok" if not missing else f"topics missing: {sorted(missing)}"
        except Exception as exc:  # any failure to reach the brokers is "not ready", never a crash
            self.result = f"unreachable: {type(exc).__name__}"
            await self.close()
        self.checked_at = now
        return self.result

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()


def _answer(status: int, body: bytes, content_type: bytes) -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 503: b"Unavailable"}
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, reason.get(status, b"Error"), content_type, len(body))
        + body
    )


async def respond(
    method: str, path: str, status: WorkerStatus = STATUS, kafka: KafkaProbe | None = None
) -> bytes:
    """The whole HTTP answer to one request line (kept apart from the socket for tests)."""
    path = path.split("?", 1)[0]
    json = b"application/json"
    if method not in ("GET", "HEAD"):
        return _answer(405, b'{"detail":"only GET"}', json)
    if path == "/livez":
        return _answer(200, b'{"status":"ok"}', json)
    if path == "/readyz":
        ready, body = status.readiness()
        if kafka is not None:
            body["kafka"] = await kafka.check()
            ready = ready and body["kafka"] == "ok"
        body["status"] = "ok" if ready else "unavailable"
        return _answer(200 if ready else 503, orjson.dumps(body), json)
    if path == "/metrics":
        return _answer(200, metrics.render(metrics.WORKER), metrics.CONTENT_TYPE.encode())
    return _answer(404, b'{"detail":"not found: /livez, /readyz, /metrics"}', json)


async def _serve_one(
    kafka: KafkaProbe | None, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        if len(head) > MAX_REQUEST_BYTES:
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        answer = await respond(method, rest.partition(" ")[0], STATUS, kafka)
        writer.write(answer if method != "HEAD" else answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass  # a probe that went away or sent nonsense: nothing to answer
    finally:
        writer.close()


async def start(host: str, port: int, kafka: KafkaProbe | None = None) -> asyncio.Server:
    """Listen on host:port; raises OSError naming the setting when the port is taken."""
    try:
        server = await asyncio.start_server(
            functools.partial(_serve_one, kafka), host, port, limit=MAX_REQUEST_BYTES
        )
    except OSError as exc:
        raise OSError(
            f"the worker's health server cannot listen on {host}:{port} ({exc.strerror}):"
            " set OPSML_WORKER_HEALTH_PORT to a free port"
        ) from exc
    log.info("health server listening", address=f"{host}:{port}")
    return server
