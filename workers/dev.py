"""`opsml dev`: the all-in-one local stack.

Starts SeaweedFS (S3), Tansu (Kafka protocol) storing its log in that S3 (so the event log
survives a restart), uses the local Postgres (creating the database) or an embedded one, runs the
migrations, then the sequencer worker and the read API as supervised children. Ctrl-C / SIGTERM
stops every child it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

from registry_core.messaging import ensure_topics
from registry_core.persistence import db
from workers import procs

log = structlog.get_logger("opsml.dev")

TANSU_BUCKET = "tansu"
ARTIFACT_BUCKET = "opsml-artifacts"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/opsml"


class DevStackError(RuntimeError):
    """The local stack could not start; the message says why and what to do."""


@dataclass
class S3Server:
    proc: subprocess.Popen[bytes]
    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """Environment for Tansu's S3 storage engine and for aioboto3."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def start_seaweed(
    data_dir: Path, log_dir: Path, *, access_key: str, secret_key: str, buckets: list[str]
) -> S3Server:
    """SeaweedFS `mini` on loopback, every port chosen free and passed explicitly."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (master, master_g, vol, vol_g, filer, filer_g, s3, s3_g, webdav, admin, admin_g, debug,
     lance) = procs.free_ports(13)  # fmt: skip
    args = [
        procs.weed_binary(), f"-logdir={log_dir}", "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
        f"-master.port={master}", f"-master.port.grpc={master_g}", f"-volume.port={vol}",
        f"-volume.port.grpc={vol_g}", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-webdav=false", f"-webdav.port={webdav}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", f"-debug.port={debug}",
        f"-s3.port.lance={lance}", "-s3.port.iceberg=0", f"-bucket={','.join(buckets)}",
    ]  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    proc = procs.spawn(args, env=env, log_path=log_dir / "seaweedfs.out")
    server = S3Server(proc, f"http://127.0.0.1:{s3}", access_key, secret_key)
    try:
        procs.wait_port("127.0.0.1", s3, 60, proc)
        _wait_buckets(server, buckets, 60)
    except BaseException:
        procs.stop(proc)
        raise
    return server


def _wait_buckets(server: S3Server, buckets: list[str], timeout: float) -> None:
    """S3 answers before the buckets from -bucket exist; wait until they do."""
    import boto3  # botocore comes with aioboto3; a sync check is simplest here

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            for bucket in buckets:
                client.head_bucket(Bucket=bucket)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"S3 buckets {buckets} not ready: {last}")


def start_tansu(port: int, *, storage: str = "memory://tansu/", env: dict[str, str] | None = None,
                log_path: Path | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    url = f"tcp://127.0.0.1:{port}"
    args = [
        procs.tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--storage-engine", storage,
    ]  # fmt: skip
    proc = procs.spawn(args, env=env, log_path=log_path)
    try:
        procs.wait_port("127.0.0.1", port, 30, proc)
    except BaseException:
        procs.stop(proc)
        raise
    return proc


def _credentials(data_dir: Path) -> tuple[str, str]:
    """Per-data-dir S3 credentials for the local stack, made once and kept with the data."""
    path = data_dir / "s3-credentials.json"
    if path.exists():
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]
    access, secret = "opsml-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


async def _database(database_url: str, data_dir: Path) -> tuple[str, object | None]:
    """The configured Postgres (database created if missing), else an embedded one."""
    try:
        await db.ensure_database(database_url)
        return database_url, None
    except (OSError, ConnectionError) as exc:
        if os.environ.get("OPSML_DATABASE_URL"):
            raise DevStackError(f"cannot reach Postgres at OPSML_DATABASE_URL: {exc}") from exc
        log.warning("no Postgres on 127.0.0.1:5432; starting an embedded one", error=str(exc))
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError as exc:
        raise DevStackError(
            "no Postgres reachable at 127.0.0.1:5432 and the embedded fallback is not installed:"
            " start Postgres, set OPSML_DATABASE_URL, or pip install pgserver"
        ) from exc
    server = pgserver.get_server(str(data_dir / "postgres"), cleanup_mode="stop")
    uri = server.get_uri("opsml")
    await db.ensure_database(uri)
    return uri, server


@dataclass
class DevStack:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".opsml")
    database_url: str = DEFAULT_DATABASE_URL
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    s3: S3Server | None = None
    embedded_pg: object | None = None

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"

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
        self._start_child("api")
        await self._wait_healthy(60)

    async def _start_services(self) -> None:
        """Postgres (or the given database), SeaweedFS, Tansu, the migrations, the topics and
        the worker: everything but the API."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        dsn, self.embedded_pg = await _database(self.database_url, self.data_dir)

        access, secret = _credentials(self.data_dir)
        self.s3 = start_seaweed(
            self.data_dir / "s3", logs, access_key=access, secret_key=secret,
            buckets=[TANSU_BUCKET, ARTIFACT_BUCKET],
        )  # fmt: skip
        self.children["seaweedfs"] = self.s3.proc
        (kafka_port,) = procs.free_ports(1)
        self.children["tansu"] = start_tansu(
            kafka_port, storage=f"s3://{TANSU_BUCKET}/", env=self.s3.env(),
            log_path=logs / "tansu.out",
        )  # fmt: skip
        bootstrap = f"127.0.0.1:{kafka_port}"
        self.env = {
            "OPSML_DATABASE_URL": dsn,
            "OPSML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OPSML_STORAGE_URI": f"s3://{ARTIFACT_BUCKET}/",
            "OPSML_S3_ENDPOINT_URL": self.s3.endpoint,
            **{
                k: v
                for k, v in self.s3.env().items()
                if k.startswith("AWS_") and k != "AWS_ENDPOINT"
            },
        }
        conn = await db.connect(dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        await ensure_topics(bootstrap, ["opsml.commands", "opsml.events"])
        self._start_child("worker")

    def _start_child(self, role: str) -> None:
        args = [sys.executable, "-m", "workers.cli", role]
        if role == "api":
            args += ["--host", self.host, "--port", str(self.port)]
        self.children[role] = procs.spawn(
            args, env=self.env, log_path=self.data_dir / "logs" / f"{role}.log"
        )

    async def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.tracking_uri, timeout=2) as http:
            while time.monotonic() < deadline:
                for role in ("api", "worker"):
                    if self.children[role].poll() is not None:
                        raise DevStackError(
                            f"the {role} exited during start-up; see"
                            f" {self.data_dir / 'logs' / (role + '.log')}"
                        )
                try:
                    resp = await http.get("/healthz")
                    epoch = resp.json().get("sequencer", {}).get("epoch")
                    if resp.status_code == 200 and epoch:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("the stack did not become healthy in time")

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart the worker or API if they die; give up if a backing service dies."""
        while not stop.is_set():
            for role, proc in list(self.children.items()):
                if proc.poll() is None:
                    continue
                if role in ("worker", "api"):
                    log.warning("child exited; restarting", role=role, code=proc.returncode)
                    self._start_child(role)
                else:
                    raise DevStackError(f"{role} exited with {proc.returncode}; stopping the stack")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    def stop(self) -> None:
        for role in ("api", "worker", "tansu", "seaweedfs"):
            proc = self.children.pop(role, None)
            if proc is not None:
                procs.stop(proc)
        if self.embedded_pg is not None:
            self.embedded_pg.cleanup()  # type: ignore[attr-defined]
            self.embedded_pg = None


async def register_demo(tracking_uri: str) -> str:
    from client import AsyncCardRegistry, RunCard

    async with AsyncCardRegistry("run", tracking_uri=tracking_uri) as reg:
        card = await reg.register_card(
            RunCard(
                space="demo",
                name="churn",
                tags={"source": "opsml dev --demo"},
                parameters={"learning_rate": 0.1},
            )
        )
    return f"registered demo RunCard demo/churn version {card.version} (uid {card.uid})"


async def run_dev(host: str, port: int, data_dir: Path, database_url: str, demo: bool) -> int:
    from registry_core.settings import get_settings

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
        print(f"API docs: {stack.tracking_uri}/docs   logs: {data_dir / 'logs'}", flush=True)
        if demo:
            print(await register_demo(stack.tracking_uri), flush=True)
        print("opsml dev is running; Ctrl-C stops it", flush=True)
        await stack.supervise(stop)
        return 0
    finally:
        stack.stop()
        print("opsml dev stopped", flush=True)
