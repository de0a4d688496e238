"""`opsml dev`: the all-in-one local stack.

Starts SeaweedFS (S3, for artifacts), Tansu (Kafka protocol), uses the local Postgres or an
embedded one, runs the migrations, then the sequencer worker and the read API as supervised
children, and writes the settings it gives them to `<data-dir>/server.env` for operator commands.

The event log lives in Tansu's memory and is restored from the Postgres archive at every start
(`workers.dev_log`); subscriber groups' positions are saved to `<data-dir>/group-offsets.json`
every few seconds and at stop. OPSML_DEV_LOG=s3 keeps the earlier layout (Tansu's log in S3).

A data directory and its database belong together: each directory gets its own database
(`default_database_url`), records its identity in it, and refuses a database that holds another
directory's registry. So a COPY of a data directory starts a clean registry in a database of its
own (the registry lives in the database, not in the directory; with OPSML_DEV_LOG=s3 the copy is
rebuilt from the copied log instead): a new directory never inherits another one's history by
accident. A worker or API that keeps exiting before it is ready stops the stack with its reason
instead of restarting forever. Ctrl-C / SIGTERM stops every child within 3 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import structlog
from pydantic import SecretStr

from registry_core.messaging import GroupPositions, ensure_topics
from registry_core.persistence import db
from registry_core.persistence.projection import Tracking, get_tracking
from registry_core.settings import Settings
from workers import procs
from workers.dev_database import (
    DEFAULT_DATABASE_URL,
    IDENTITY_COMMENT,
    claim_database,
    default_database_url,
    host_of,
    open_database,
)
from workers.dev_env import DEV_IDLE_FETCH_WAIT_MS, server_settings
from workers.dev_files import (
    GROUP_OFFSETS_FILE,
    IDENTITY_FILE,
    SERVER_ENV,
    DevStackError,
    data_dir_identity,
    read_saved_positions,
    s3_credentials,
    write_saved_positions,
    write_server_env,
)
from workers.dev_log import restore_log
from workers.dev_report import early_exit_report, register_demo
from workers.dev_services import (
    ARTIFACT_BUCKET,
    TANSU_BUCKET,
    S3Server,
    start_seaweed,
    start_tansu,
)

# Names the tests, the benchmarks and the CLI import from here.
__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEV_IDLE_FETCH_WAIT_MS",
    "GROUPS_SAVE_SECONDS",
    "GROUP_OFFSETS_FILE",
    "IDENTITY_COMMENT",
    "IDENTITY_FILE",
    "SERVER_ENV",
    "DevStack",
    "DevStackError",
    "S3Server",
    "claim_database",
    "data_dir_identity",
    "default_database_url",
    "run_dev",
    "start_seaweed",
    "start_tansu",
    "write_server_env",
]

log = structlog.get_logger("opsml.dev")

# How often the supervisor saves subscriber groups' positions (a crash of the whole stack
# re-delivers up to this much to a group, at least once; reading them costs ~1 ms of CPU).
GROUPS_SAVE_SECONDS = 5.0
SUPERVISED = ("worker", "api")
# A worker or API that exits this many times in a row before it is ready stops the stack, with
# the end of its log: it would only fail again (it restarted every 2 s while "running").
EARLY_EXITS_MAX = 3
# The children get their stop signals together and this long before SIGKILL. Tansu exits at once on
# SIGINT but waits 5 s on SIGTERM; SeaweedFS takes ~1.2 s; uvicorn waits for open long-polls
# unless told a bound (`timeout_graceful_shutdown`).
STOP_GRACE_SECONDS = 2.2
STOP_SERVICES_AFTER = 0.6  # at the latest: SeaweedFS then still has 1.6 s of the grace
STOP_SIGNALS = {
    "api": signal.SIGTERM,
    "worker": signal.SIGTERM,
    "tansu": signal.SIGINT,
    "seaweedfs": signal.SIGTERM,
}


@dataclass
class DevStack:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".opsml")
    # None: the data directory's own database on the local Postgres (`default_database_url`).
    database_url: str | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    s3: S3Server | None = None
    embedded_pg: object | None = None
    dsn: str = ""
    server_env: Path | None = None
    # Per supervised child (worker, api): whether it became ready since it was (re)started, how
    # many times in a row it exited before that, and where its log began at its start.
    ready: dict[str, bool] = field(default_factory=dict)
    early_exits: dict[str, int] = field(default_factory=dict)
    log_start: dict[str, int] = field(default_factory=dict)
    epoch_floor: int = 0  # the claimed epoch before the worker started; ready once past it
    log_engine: str = ""  # "memory" or "s3" (OPSML_DEV_LOG), set at start
    # The events topic's subscriber groups (memory log only): read every GROUPS_SAVE_SECONDS,
    # the last positions written to GROUP_OFFSETS_FILE.
    groups: GroupPositions | None = None
    groups_saved: dict[str, int] = field(default_factory=dict)

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return self.env.get("OPSML_KAFKA_BOOTSTRAP_SERVERS", "")

    async def start(self) -> None:
        if procs.port_open(self.host, self.port):
            raise DevStackError(
                f"{self.host}:{self.port} is already in use (another `opsml dev`?): pass --port"
            )
        # Hold the API's port until the API starts: the ports SeaweedFS and Tansu get are picked
        # free by binding port 0, which could otherwise hand out this one (a free port that a
        # caller chose the same way, as the tests do).
        # SO_REUSEADDR as uvicorn binds it: the previous run's connections in TIME_WAIT do not
        # block it, while `free_ports` (which binds without it) still cannot take the port.
        reserved = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            if os.name != "nt":
                reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserved.bind((self.host, self.port))
        except OSError as exc:
            reserved.close()
            raise DevStackError(
                f"{self.host}:{self.port} is not available ({exc.strerror}): pass --port"
            ) from None
        try:
            await self._start_services()
        finally:
            reserved.close()
        await self._start_child("api")
        await self._wait_ready(60)

    async def _start_services(self) -> None:
        """Postgres (or the given database), SeaweedFS, Tansu, the migrations, the topics and
        the worker: everything but the API."""
        from registry_core.settings import get_settings

        settings = get_settings()
        new_dir = (
            not (self.data_dir / IDENTITY_FILE).exists() and not (self.data_dir / "s3").exists()
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        identity = data_dir_identity(self.data_dir)
        explicit = self.database_url is not None
        url = self.database_url or default_database_url(self.data_dir)
        self.dsn, self.embedded_pg = await open_database(url, self.data_dir, explicit=explicit)
        conn = await db.connect(self.dsn)
        try:
            await claim_database(
                conn, identity, data_dir=self.data_dir, dsn=self.dsn, new_dir=new_dir
            )
            await db.migrate(conn)
        finally:
            await conn.close()

        access, secret = s3_credentials(self.data_dir)
        self.s3 = start_seaweed(
            self.data_dir / "s3", logs, access_key=access, secret_key=secret,
            buckets=[TANSU_BUCKET, ARTIFACT_BUCKET],
        )  # fmt: skip
        self.children["seaweedfs"] = self.s3.proc
        (kafka_port,) = procs.free_ports(1)
        self.log_engine = settings.dev_log
        in_memory = self.log_engine == "memory"
        self.children["tansu"] = start_tansu(
            kafka_port, storage="memory://tansu/" if in_memory else f"s3://{TANSU_BUCKET}/",
            env=self.s3.env(), log_path=logs / "tansu.out",
        )  # fmt: skip
        bootstrap = f"127.0.0.1:{kafka_port}"
        self.env = server_settings(
            settings, dsn=self.dsn, bootstrap=bootstrap, s3=self.s3, host=self.host, port=self.port
        )
        self.server_env = write_server_env(self.data_dir, self.env)
        await ensure_topics(bootstrap, [settings.commands_topic, settings.events_topic])
        if in_memory:
            await self._restore_log(
                settings.model_copy(
                    update={
                        "database_url": SecretStr(self.dsn),
                        "kafka_bootstrap_servers": bootstrap,
                    }
                )
            )
        await self._start_child("worker")

    async def _restore_log(self, settings: Settings) -> None:
        """The broker starts empty: the archive back in the events topic and every subscriber
        group at its saved position (`workers.dev_log.restore_log`)."""
        self.groups_saved = await restore_log(settings, self.data_dir)
        self.groups = GroupPositions(settings.kafka_bootstrap_servers, settings.events_topic)

    def _saved_positions(self) -> dict[str, int]:
        return read_saved_positions(self.data_dir)

    async def save_group_positions(self, timeout: float = 2.0) -> None:
        """Write the subscriber groups' committed positions to GROUP_OFFSETS_FILE when they
        changed (the in-memory broker forgets them). A broker that does not answer in time
        keeps the last snapshot."""
        if self.groups is None:
            return
        try:
            positions = await asyncio.wait_for(self.groups.read(), timeout)
        except Exception as exc:
            log.debug("subscriber positions not saved", error=str(exc))
            return
        merged = {**self.groups_saved, **positions}
        if merged != self.groups_saved:
            write_saved_positions(self.data_dir, merged)
            self.groups_saved = merged

    async def close_groups(self) -> None:
        """The last positions, before the broker stops, and the client that reads them."""
        if self.groups is not None:
            await self.save_group_positions(timeout=1.0)
            try:
                await asyncio.wait_for(self.groups.close(), 1.0)
            except Exception as exc:
                log.debug("subscriber positions client not closed", error=str(exc))
            self.groups = None

    def _log_path(self, role: str) -> Path:
        return self.data_dir / "logs" / f"{role}.log"

    async def _start_child(self, role: str) -> None:
        args = [sys.executable, "-m", "workers.cli", role]
        if role == "api":
            args += ["--host", self.host, "--port", str(self.port)]
        if role == "worker":
            self.epoch_floor = await self._claimed_epoch()
        log_path = self._log_path(role)
        self.log_start[role] = log_path.stat().st_size if log_path.exists() else 0
        self.ready[role] = False
        self.children[role] = procs.spawn(args, env=self.env, log_path=log_path)

    async def _claimed_epoch(self) -> int:
        from registry_core.settings import get_settings

        tracking = await self._tracking(get_settings().worker_name)
        return tracking.claimed_epoch if tracking else 0

    async def _tracking(self, worker_name: str) -> Tracking | None:
        conn = await db.connect(self.dsn)
        try:
            return await get_tracking(conn, worker_name)
        finally:
            await conn.close()

    async def _is_ready(self, role: str, http: httpx.AsyncClient) -> bool:
        """The API answers /healthz; the worker claimed a new epoch and caught up to its
        marker (an old epoch in the database says nothing about the worker just started)."""
        try:
            if role == "api":
                return (await http.get("/healthz")).status_code == 200
            from registry_core.settings import get_settings

            tracking = await self._tracking(get_settings().worker_name)
        except (httpx.HTTPError, OSError, asyncpg.PostgresError):
            return False
        return (
            tracking is not None
            and tracking.claimed_epoch > self.epoch_floor
            and tracking.max_epoch >= tracking.claimed_epoch
        )

    async def _check(self, http: httpx.AsyncClient) -> None:
        """One round of supervision: restart a worker or API that died after it was ready;
        give up on one that keeps dying before it is, or when a backing service died."""
        for role, proc in list(self.children.items()):
            code = proc.poll()
            if code is not None and role not in SUPERVISED:
                raise DevStackError(
                    f"{role} exited with {code}; stopping the stack (its log is in"
                    f" {self.data_dir / 'logs'})"
                )
            if code is not None:
                if self.ready.get(role):
                    log.warning("child exited; restarting", role=role, code=code)
                else:
                    self.early_exits[role] = self.early_exits.get(role, 0) + 1
                    if self.early_exits[role] >= EARLY_EXITS_MAX:
                        raise DevStackError(self._failure(role, code))
                    log.warning(
                        "child exited before it was ready; restarting",
                        role=role, code=code, attempt=self.early_exits[role],
                    )  # fmt: skip
                await self._start_child(role)
            elif role in SUPERVISED and not self.ready.get(role):
                if await self._is_ready(role, http):
                    self.ready[role] = True
                    self.early_exits[role] = 0

    def _failure(self, role: str, code: int) -> str:
        path = self._log_path(role)
        try:
            with path.open("rb") as f:
                f.seek(self.log_start.get(role, 0))
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        return early_exit_report(role, code, EARLY_EXITS_MAX, text, path, self.dsn, self.data_dir)

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.tracking_uri, timeout=2) as http:
            while time.monotonic() < deadline:
                await self._check(http)
                if all(self.ready.get(role) for role in SUPERVISED):
                    return
                await asyncio.sleep(0.1)
        waiting = [role for role in SUPERVISED if not self.ready.get(role)]
        raise DevStackError(
            f"the stack did not become ready in {timeout:.0f}s (waiting for: {', '.join(waiting)});"
            f" see the logs in {self.data_dir / 'logs'}"
        )

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart the worker or API if they die; give up if one keeps dying before it is
        ready, or if a backing service dies."""
        async with httpx.AsyncClient(base_url=self.tracking_uri, timeout=2) as http:
            next_save = time.monotonic() + GROUPS_SAVE_SECONDS
            while not stop.is_set():
                await self._check(http)
                if time.monotonic() >= next_save:
                    await self.save_group_positions()
                    next_save = time.monotonic() + GROUPS_SAVE_SECONDS
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        """Stop the worker and the API at once, Tansu and SeaweedFS as soon as the worker is
        gone (so it does not end mid-produce) or after STOP_SERVICES_AFTER, each with the
        signal that ends it soonest; kill what still runs after STOP_GRACE_SECONDS. The whole
        stack is gone within 3 s."""
        roles = {proc.pid: role for role, proc in self.children.items()}
        front = [
            (self.children.pop(role), STOP_SIGNALS[role])
            for role in SUPERVISED
            if role in self.children
        ]
        back = [
            (self.children.pop(role), STOP_SIGNALS[role])
            for role in ("tansu", "seaweedfs")
            if role in self.children
        ]
        killed = procs.stop_all(
            front,
            STOP_GRACE_SECONDS,
            services=back,
            users=[proc for proc, _ in front if roles[proc.pid] == "worker"],
            services_wait=STOP_SERVICES_AFTER,
        )
        if killed:
            log.info("killed after the grace period", roles=[roles[p.pid] for p in killed])
        if self.embedded_pg is not None:
            self.embedded_pg.cleanup()  # type: ignore[attr-defined]
            self.embedded_pg = None


async def run_dev(
    host: str, port: int, data_dir: Path, database_url: str | None, demo: bool
) -> int:
    """`database_url` None (or the old shared default, when OPSML_DATABASE_URL is not set):
    the data directory's own database on the local Postgres, or an embedded Postgres."""
    from registry_core.settings import get_settings

    if database_url == DEFAULT_DATABASE_URL and "OPSML_DATABASE_URL" not in os.environ:
        database_url = None  # the CLI's default, not a choice
    try:
        # the dev stack is open on loopback; anywhere else it needs access control set up
        secured = get_settings().auth_required(host)
    except ValueError as exc:
        raise DevStackError(str(exc)) from None
    if secured and demo:
        raise DevStackError(
            "--demo registers without a token, and access control is on (OPSML_GRANT_KEY is"
            " set): drop --demo, or unset OPSML_GRANT_KEY on loopback"
        )
    stack = DevStack(host=host, port=port, data_dir=data_dir, database_url=database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start()
        print(f"OPSML_TRACKING_URI={stack.tracking_uri}", flush=True)
        print(
            f"Web UI: {stack.tracking_uri}/   API docs: {stack.tracking_uri}/docs   logs:"
            f" {data_dir / 'logs'}",
            flush=True,
        )
        print(
            f"Kafka: {stack.bootstrap}   Postgres: {host_of(stack.dsn)}   server settings:"
            f" {stack.server_env}",
            flush=True,
        )
        if demo:
            print(await register_demo(stack.tracking_uri), flush=True)
        print("opsml dev is running; Ctrl-C stops it", flush=True)
        await stack.supervise(stop)
        return 0
    finally:
        await stack.close_groups()
        stack.stop()
        print("opsml dev stopped", flush=True)
