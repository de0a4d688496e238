"""`opsml dev`: the all-in-one local stack.

Starts SeaweedFS (S3, for artifacts), Tansu (Kafka protocol), uses the local Postgres or an
embedded one, runs the migrations, then the sequencer worker and the read API as supervised
children, and writes the settings it gives them to `<data-dir>/server.env` for operator commands.

Tansu keeps the event log in memory, and every start writes the Postgres archive (`event_log`)
back into the events topic at the same offsets, in large batches (`opsml replay --republish`).
Tansu 0.6 stores one batch per produce and lists them all on every fetch, so a log kept in its
S3 engine got slower with every registration (~140 ms per fetch at 10k); restored, 10k events
are ~12 batches. Nothing acknowledged is lost: a registration's events are archived in the
transaction that records the outcome its client waits for. Commands not yet decided when the
stack stopped were never answered (their clients saw a timeout). Subscriber groups' positions in
the events topic are saved to `<data-dir>/group-offsets.json` every few seconds and at stop, and
committed again at start. OPSML_DEV_LOG=s3 keeps the earlier layout (Tansu's log in SeaweedFS).

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
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import structlog
from pydantic import SecretStr

from registry_core.messaging import GroupPositions, commit_positions, ensure_topics
from registry_core.persistence import db
from registry_core.persistence.projection import Tracking, get_tracking
from registry_core.settings import Settings
from workers import procs

log = structlog.get_logger("opsml.dev")

TANSU_BUCKET = "tansu"
ARTIFACT_BUCKET = "opsml-artifacts"
# The shared default database of earlier versions; now each data directory gets its own
# (`default_database_url`).
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/opsml"
IDENTITY_FILE = "identity"
IDENTITY_COMMENT = "opsml dev data directory "
SERVER_ENV = "server.env"
CREDENTIALS_FILE = "s3-credentials.json"
GROUP_OFFSETS_FILE = "group-offsets.json"
# How often the supervisor saves subscriber groups' positions (a crash of the whole stack
# re-delivers up to this much to a group, at least once; reading them costs ~1 ms of CPU).
GROUPS_SAVE_SECONDS = 5.0
# The restored log's record batches: 10k events in ~12 batches (Tansu lists them on every fetch).
RESTORE_BATCH_BYTES = 1_048_576
# The worker's fetch wait while no commands come (the busy wait, 3 ms, is unchanged): with 20 ms
# the idle worker and Tansu polled each other for ~5% of a core; with 150 ms the whole idle stack
# is ~2%. The first registration after a quiet spell of 2 s waits for that fetch, ~75 ms on
# average; back-to-back registrations do not (docs/benchmarks.md, "dev stack").
DEV_IDLE_FETCH_WAIT_MS = 150
SUPERVISED = ("worker", "api")
# A worker or API that exits this many times in a row before it is ready stops the stack, with
# the end of its log: it would only fail again (it restarted every 2 s while "running").
EARLY_EXITS_MAX = 3
FAILURE_LINES = 15
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): ")
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
    (master, master_g, vol, vol_g, filer, filer_g, s3, s3_g, webdav, debug,
     lance) = procs.free_ports(11)  # fmt: skip
    # The plugin worker inside `weed mini` dials the admin port + 10000 whatever
    # -admin.port.grpc says: any other gRPC port left it reconnecting every few seconds, forever.
    admin, admin_g = procs.free_port_pair(10_000)
    args = [
        procs.weed_binary(), f"-logdir={log_dir}", "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-admin.ui=false",
        f"-master.port={master}", f"-master.port.grpc={master_g}", f"-volume.port={vol}",
        f"-volume.port.grpc={vol_g}", f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", "-webdav=false", f"-webdav.port={webdav}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", f"-debug.port={debug}",
        f"-s3.port.lance={lance}", "-s3.port.iceberg=0", f"-bucket={','.join(buckets)}",
        # no pause between the last heartbeat and the volume server's stop (1 s in mini): the
        # stack stops within 3 s (docs/architecture.md)
        "-volume.preStopSeconds=0",
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
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]
    access, secret = "opsml-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


def default_database_url(data_dir: Path) -> str:
    """The local Postgres database of a data directory when none is given: named after the
    directory (a slug and a hash of its absolute path). One shared default database made every
    new directory inherit another one's registry, whose events its own log does not have: the
    worker refused it ("the broker lost its data") and restarted every 2 s."""
    path = data_dir.expanduser().resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    base = path.parent.name if path.name in ("", ".opsml") else path.name
    slug = re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_")[:32]
    name = f"opsml_{slug}_{digest}" if slug else f"opsml_{digest}"
    return f"{DEFAULT_DATABASE_URL.rsplit('/', 1)[0]}/{name}"


def data_dir_identity(data_dir: Path) -> str:
    """The data directory's identity: a random id made at its first start and kept in
    `<data-dir>/identity`. The database the stack uses records it (`claim_database`)."""
    path = data_dir / IDENTITY_FILE
    if path.exists():
        ident = path.read_text().strip()
        if not re.fullmatch(r"[0-9a-f]{32}", ident):
            raise DevStackError(
                f"{path} does not hold an identity written by opsml dev: restore it, or delete"
                " it if this directory's database is new (a new identity is made)"
            )
        return ident
    ident = uuid.uuid4().hex
    path.write_text(ident + "\n")
    return ident


async def claim_database(
    conn: asyncpg.Connection, identity: str, *, data_dir: Path, dsn: str, new_dir: bool
) -> None:
    """Tie the database to the data directory (a comment on the database names its identity),
    or refuse a database that holds another directory's registry: its events are in that
    directory's event log, not in this one."""
    comment = await conn.fetchval(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
        " WHERE datname = current_database()"
    )
    name = await conn.fetchval("SELECT current_database()")
    if comment and comment.startswith(IDENTITY_COMMENT):
        owner = comment[len(IDENTITY_COMMENT) :].strip()
        if owner == identity:
            return
        raise DevStackError(
            f"the database {name} belongs to another opsml dev data directory (identity"
            f" {owner[:8]}), not to {data_dir} (identity {identity[:8]}): its registry's events"
            " are in that directory's event log, not in this one, and the worker would refuse"
            f" it. Either pass --data-dir of the directory it belongs to; or pass --database-url"
            f" with another database; or, to start afresh and lose that registry, drop it:"
            f" {_drop_command(dsn, name)}"
        )
    if new_dir and await _has_history(conn):
        raise DevStackError(
            f"the database {name} already holds a registry, and {data_dir} is a new data"
            " directory whose event log does not have its events: the worker would refuse it."
            " Pass --database-url with a new database (created if missing), or the --data-dir"
            f" this database was used with; or, to lose that registry, drop it:"
            f" {_drop_command(dsn, name)}"
        )
    if comment:
        log.warning("the database has a comment of its own; not recording the data directory")
        return
    statement = await conn.fetchval(
        "SELECT format('COMMENT ON DATABASE %I IS %L', current_database(), $1::text)",
        IDENTITY_COMMENT + identity,
    )
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        log.warning("cannot record the data directory in the database (not its owner)")


async def _has_history(conn: asyncpg.Connection) -> bool:
    if await conn.fetchval("SELECT to_regclass('event_log')") is None:
        return False
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_log)"))


def _drop_command(dsn: str, name: str) -> str:
    admin = urlunsplit(urlsplit(dsn)._replace(path="/postgres", query=""))
    return f"""psql '{admin}' -c 'DROP DATABASE "{name}"'"""


def write_server_env(data_dir: Path, env: Mapping[str, str]) -> Path:
    """`<data-dir>/server.env`: the settings the stack gives its worker and API, as plain
    KEY=value lines of the environment variables `registry_core.settings` reads, so operator
    commands (replay, token, migrate) can load it. Mode 600: it holds the S3 secret."""
    path = data_dir / SERVER_ENV
    lines = [
        "# The server settings of the `opsml dev` stack on this data directory, as environment",
        "# variables (rewritten at every start; the Kafka and S3 ports change each time).",
        f"# S3 credentials are made once per data directory: {CREDENTIALS_FILE}",
    ]
    for key, value in env.items():
        if "\n" in value or "\r" in value:
            raise DevStackError(f"{key} holds a line break; server.env cannot carry it")
        lines.append(f"{key}={value}")
    tmp = path.with_name(SERVER_ENV + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)  # an older file left with another mode keeps it through O_CREAT
    os.replace(tmp, path)
    return path


async def _database(
    database_url: str, data_dir: Path, *, explicit: bool
) -> tuple[str, object | None]:
    """The configured Postgres (database created if missing), else an embedded one."""
    try:
        await db.ensure_database(database_url)
        return database_url, None
    except ValueError as exc:
        raise DevStackError(
            f"{exc}: pass --database-url with a name of letters, digits, _"
        ) from None
    except (OSError, ConnectionError) as exc:
        if explicit:
            raise DevStackError(
                f"cannot reach Postgres at {_host_of(database_url)} ({exc}): start it, or fix"
                " --database-url / OPSML_DATABASE_URL"
            ) from None
        log.warning("no Postgres on 127.0.0.1:5432; starting an embedded one", error=str(exc))
    except asyncpg.PostgresError as exc:
        raise DevStackError(
            f"Postgres at {_host_of(database_url)} refused: {exc}: fix --database-url /"
            " OPSML_DATABASE_URL"
        ) from None
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


def _host_of(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{parts.path.lstrip('/')}"


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
        self.dsn, self.embedded_pg = await _database(url, self.data_dir, explicit=explicit)
        conn = await db.connect(self.dsn)
        try:
            await claim_database(
                conn, identity, data_dir=self.data_dir, dsn=self.dsn, new_dir=new_dir
            )
            await db.migrate(conn)
        finally:
            await conn.close()

        access, secret = _credentials(self.data_dir)
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
        # Server settings set in opsml dev's own environment reach the children too (spawn
        # passes the environment on); server.env carries them, below the stack's own.
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k.startswith("OPSML_") and k[6:].lower() in type(settings).model_fields
        }
        self.env = {
            "OPSML_KAFKA_FETCH_MAX_WAIT_MS": str(DEV_IDLE_FETCH_WAIT_MS),  # unless set
            **inherited,
            "OPSML_DATABASE_URL": self.dsn,
            "OPSML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OPSML_COMMANDS_TOPIC": settings.commands_topic,
            "OPSML_EVENTS_TOPIC": settings.events_topic,
            "OPSML_STORAGE_URI": f"s3://{ARTIFACT_BUCKET}/",
            "OPSML_S3_ENDPOINT_URL": self.s3.endpoint,
            "OPSML_API_HOST": self.host,
            "OPSML_API_PORT": str(self.port),
            **{
                k: v
                for k, v in self.s3.env().items()
                if k.startswith("AWS_") and k != "AWS_ENDPOINT"
            },
        }
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
        """The broker starts empty: write the Postgres archive back into the events topic at its
        old offsets (large batches: cheap fetches), which also resets the tracked command offset
        (the new commands topic starts at 0), and put every subscriber group back at its saved
        position. Every acknowledged registration is in the archive: its events are written in
        the transaction that records the outcome its client waits for."""
        from workers.replay.republish import republish
        from workers.replay.schemas import ReplayError

        try:
            result = await republish(settings, batch_bytes=RESTORE_BATCH_BYTES)
        except ReplayError as exc:
            raise DevStackError(f"cannot restore the event log from the archive: {exc}") from None
        log.info(
            "restored the event log from the archive", events=result.events, gaps=result.gaps,
            seconds=round(result.seconds, 2),
        )  # fmt: skip
        saved = self._saved_positions()
        if saved:
            # a position past the archive (events read but never archived before a crash of
            # the whole stack: never acknowledged) resumes at its end, where new events go
            end = result.events + result.gaps
            saved = {group: min(offset, end) for group, offset in saved.items()}
            await commit_positions(settings.kafka_bootstrap_servers, settings.events_topic, saved)
        self.groups_saved = saved
        self.groups = GroupPositions(settings.kafka_bootstrap_servers, settings.events_topic)

    def _saved_positions(self) -> dict[str, int]:
        path = self.data_dir / GROUP_OFFSETS_FILE
        if not path.exists():
            return {}
        try:
            saved = json.loads(path.read_text())
            return {str(group): int(offset) for group, offset in saved.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise DevStackError(
                f"{path} is not a file of subscriber positions written by opsml dev ({exc}):"
                " restore it, or delete it (subscriber groups then start where their"
                " `from_` says)"
            ) from None

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
            path = self.data_dir / GROUP_OFFSETS_FILE
            tmp = path.with_name(GROUP_OFFSETS_FILE + ".tmp")
            tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, path)
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
        tail = [line for line in text.splitlines() if line.strip()]
        # A traceback ends with the exception's own message, which says what is wrong and what
        # to do: show it rather than the frames above it (the whole log stays in the file).
        raised = [i for i, line in enumerate(tail) if EXCEPTION_LINE.match(line)]
        tail = tail[raised[-1] :] if raised else tail
        tail = tail[-FAILURE_LINES:]
        lines = [
            f"the {role} exited {EARLY_EXITS_MAX} times in a row before it was ready (last exit"
            f" code {code}); from its log ({path}):",
            *(f"    {line}" for line in tail),
        ]
        if "the broker lost its data" in text:
            lines.append(
                f"The database ({_host_of(self.dsn)}) holds a registry whose events are not in"
                f" the event log of {self.data_dir} (its s3/ directory lost or replaced). To keep"
                " that registry, restore the directory from a backup; to start afresh, pass"
                f" --database-url with a new database, or drop this one:"
                f" {_drop_command(self.dsn, urlsplit(self.dsn).path.lstrip('/'))}"
            )
        else:
            lines.append("Fix the cause above and start opsml dev again.")
        return "\n".join(lines)

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
        print(f"API docs: {stack.tracking_uri}/docs   logs: {data_dir / 'logs'}", flush=True)
        print(
            f"Kafka: {stack.bootstrap}   Postgres: {_host_of(stack.dsn)}   server settings:"
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
