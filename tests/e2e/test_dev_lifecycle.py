"""`opsml dev` over its life: stops in seconds under load, stays quiet when idle, fails loudly
when its worker cannot start, never hands a new data directory another one's registry, and
writes server.env for operator commands."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from client import CardRegistry, RunCard
from registry_core.settings import ClientSettings
from workers import dev, procs

pytestmark = pytest.mark.e2e

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _start(
    data_dir: Path,
    port: int,
    database_url: str | None,
    *extra: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`opsml dev` as a user runs it; `database_url` None: the data directory's own database."""
    env = {**os.environ, "OPSML_LOG_FORMAT": "console", **(env or {})}
    args = [sys.executable, "-m", "workers.cli", "dev", "--port", str(port)]
    args += ["--data-dir", str(data_dir), *extra]
    if database_url is None:
        env.pop("OPSML_DATABASE_URL", None)
    else:
        args += ["--database-url", database_url]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; output:\n" + "\n".join(lines))


def _alive(ps: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in ps:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[float, str]:
    """Signal the stack; (seconds until every child process is gone, the rest of its output)."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    started = time.monotonic()
    proc.send_signal(sig)
    deadline = started + 30
    while _alive(kids) and time.monotonic() < deadline:
        time.sleep(0.02)
    took = time.monotonic() - started
    out, _ = proc.communicate(timeout=30)
    return took, out


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Stacks started by a test, stopped (killed if need be) whatever happens."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            kids = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            for k in _alive(kids):
                k.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_within_3s_with_15_clients_mid_long_poll(
    tmp_path: Path, database_url: str, running: list[subprocess.Popen[str]], sig: int
) -> None:
    (port,) = procs.free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path / ".opsml", port, database_url)
    running.append(proc)
    _read_until(proc, "opsml dev is running")

    quit_ = threading.Event()
    registered = [0] * 5
    polls_answered: list[object] = []

    def long_poll() -> None:
        # a command nobody sent: the API holds the request open for the whole wait
        with httpx.Client(base_url=uri, timeout=60) as http:
            try:
                r = http.get(f"/api/v1/commands/{uuid.uuid4()}", params={"wait": 50})
                polls_answered.append(r.status_code)
            except httpx.HTTPError as exc:
                polls_answered.append(type(exc).__name__)

    def register(i: int) -> None:
        # short timeouts: a registration the stop cut off gives up soon after
        quick = ClientSettings(
            request_timeout_seconds=3, register_timeout_seconds=3, kafka_request_timeout_ms=2000
        )
        with CardRegistry("run", tracking_uri=uri, settings=quick) as reg:
            while not quit_.is_set():
                try:
                    reg.register_card(RunCard(space="load", name=f"c{i}"))
                    registered[i] += 1
                except Exception:
                    if not quit_.is_set():
                        raise
                    return

    threads = [threading.Thread(target=long_poll, daemon=True) for _ in range(10)]
    threads += [threading.Thread(target=register, args=(i,), daemon=True) for i in range(5)]
    for t in threads:
        t.start()
    api = next(
        k
        for k in psutil.Process(proc.pid).children()
        if k.cmdline()[1:4] == ["-m", "workers.cli", "api"]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conns = [c for c in api.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED]
        if len(conns) >= 15 and all(registered):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"load not under way: registered {registered}, conns {len(conns)}")
    assert polls_answered == [], "a long-poll ended before the stop"

    quit_.set()  # registrations under way go on; a failure after this is the stop's doing
    took, out = _stop(proc, sig)
    killed = [line for line in out.splitlines() if "killed after the grace" in line]
    print(f"every child gone {took:.2f}s after {signal.Signals(sig).name}; {killed}")
    join_by = time.monotonic() + 5  # the long-polls end with the API; registrars are daemons
    for t in threads[:10]:
        t.join(max(0.0, join_by - time.monotonic()))
    assert took <= 3.0, f"children still running {took:.2f}s after {sig!r}; output:\n{out}"
    assert proc.returncode == 0, out
    assert "opsml dev stopped" in out
    assert len(polls_answered) == 10  # every long-poll got an answer or a closed connection


def test_idle_stack_is_quiet(
    tmp_path: Path, database_url: str, running: list[subprocess.Popen[str]]
) -> None:
    (port,) = procs.free_ports(1)
    data_dir = tmp_path / ".opsml"
    proc = _start(data_dir, port, database_url)
    running.append(proc)
    _read_until(proc, "opsml dev is running")
    time.sleep(3)  # start-up work settles (the first fetches, the volume server's growth)
    stack = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    window = 30.0
    before = {p.pid: sum(p.cpu_times()[:2]) for p in stack}
    time.sleep(window)
    used = {p.pid: (sum(p.cpu_times()[:2]) - before[p.pid]) / window * 100 for p in stack}
    cmds = {p.pid: " ".join(p.cmdline()) for p in stack}
    report = ", ".join(f"{cmds[pid][-50:]}: {pct:.2f}%" for pid, pct in used.items())
    total = sum(used.values())
    # The Kafka polling pair: the worker's idle fetch (150 ms on the dev stack,
    # workers.dev.DEV_IDLE_FETCH_WAIT_MS) and Tansu answering it. Everything else - opsml dev's
    # supervision and its snapshot of subscriber positions, SeaweedFS, the API - must stay near
    # nothing: SeaweedFS's plugin worker reconnecting to a wrong port, or a supervisor polling
    # the database or the API while all is ready, shows here.
    polling = {
        pid
        for pid, cmd in cmds.items()
        if cmd.endswith("workers.cli worker") or " broker --listener-url " in cmd
    }
    assert len(polling) == 2, report
    rest = sum(pct for pid, pct in used.items() if pid not in polling)
    assert rest <= 1.0, f"idle CPU outside the Kafka polling {rest:.2f}% ({report})"
    # The goal (issue 20): 3% of one core for the whole stack over 30 s. With the worker's 20 ms
    # idle wait the polling pair alone used ~5%; with 150 ms the stack measured 1.7-2.6%.
    assert total <= 3.0, f"idle CPU of the whole stack {total:.2f}% ({report})"
    weed_log = (data_dir / "logs" / "seaweedfs.out").read_text()
    assert "Plugin worker" not in weed_log, "SeaweedFS's plugin worker cannot reach its admin"


def test_server_env_reaches_the_running_stack(
    tmp_path: Path, database_url: str, running: list[subprocess.Popen[str]]
) -> None:
    (port,) = procs.free_ports(1)
    data_dir = tmp_path / ".opsml"
    proc = _start(data_dir, port, database_url)
    running.append(proc)
    out = _read_until(proc, "opsml dev is running")
    path = data_dir / "server.env"
    assert any(f"server settings: {path}" in line for line in out), out
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    assert env["OPSML_DATABASE_URL"] == database_url
    assert env["OPSML_STORAGE_URI"] == "s3://opsml-artifacts/"
    assert any(f"Kafka: {env['OPSML_KAFKA_BOOTSTRAP_SERVERS']}" in line for line in out), out
    # An operator command with nothing but these variables reaches the stack's database...
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPSML_", "AWS_"))}
    migrate = subprocess.run(
        [sys.executable, "-m", "workers.cli", "migrate"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert migrate.returncode == 0 and "up to date" in migrate.stdout, migrate
    # ...its broker (the topics it gave the worker) and its S3 bucket, with those credentials.
    check = textwrap.dedent("""
        import asyncio, os, boto3
        from aiokafka.admin import AIOKafkaAdminClient
        env = os.environ
        async def topics():
            admin = AIOKafkaAdminClient(bootstrap_servers=env["OPSML_KAFKA_BOOTSTRAP_SERVERS"])
            await admin.start()
            try:
                return await admin.list_topics()
            finally:
                await admin.close()
        found = asyncio.run(topics())
        assert {env["OPSML_COMMANDS_TOPIC"], env["OPSML_EVENTS_TOPIC"]} <= set(found), found
        s3 = boto3.client("s3", endpoint_url=env["OPSML_S3_ENDPOINT_URL"])
        s3.head_bucket(Bucket=env["OPSML_STORAGE_URI"].removeprefix("s3://").strip("/"))
        print("ok")
    """)
    probe = subprocess.run(
        [sys.executable, "-c", check], env={**clean, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert probe.stdout.strip() == "ok", probe.stderr


def test_a_worker_that_cannot_start_stops_the_stack_with_its_reason(
    tmp_path: Path, database_url: str, running: list[subprocess.Popen[str]]
) -> None:
    (port,) = procs.free_ports(1)
    data_dir = tmp_path / ".opsml"
    s3_log = {"OPSML_DEV_LOG": "s3"}
    first = _start(data_dir, port, database_url, env=s3_log)
    running.append(first)
    _read_until(first, "opsml dev is running")
    with CardRegistry("run", tracking_uri=f"http://127.0.0.1:{port}") as reg:
        reg.register_card(RunCard(space="demo", name="churn"))
    _stop(first)
    # The event log goes (SeaweedFS's data, where OPSML_DEV_LOG=s3 keeps it), the database
    # keeps its registry: the worker refuses to start ("the broker lost its data"), every time.
    # (The default log is rebuilt from the database at every start, so cannot be lost this way.)
    shutil.rmtree(data_dir / "s3")
    started = time.monotonic()
    second = _start(data_dir, port, database_url, env=s3_log)
    running.append(second)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1, out
    assert time.monotonic() - started < 45
    assert "opsml dev is running" not in out
    assert "exited 3 times in a row before it was ready" in out, out
    assert "the broker lost its data" in out, out  # the worker's own reason, from its log
    assert "DROP DATABASE" in out and "--database-url" in out, out  # and the fix


async def _comment(database: str) -> str | None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        return await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()


async def _drop(*databases: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        for name in databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_each_new_data_directory_gets_a_clean_registry(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """No --database-url: each directory its own database on the local Postgres; a copy gets
    its own too, and with it a clean registry (the registry lives in the database, not in the
    directory). Deleting a directory and starting again on its path is refused, with the
    command that starts afresh."""
    a, b, c = (tmp_path / d / ".opsml" for d in "abc")
    names = [dev.default_database_url(d).rsplit("/", 1)[1] for d in (a, b, c)]
    (port,) = procs.free_ports(1)
    try:
        for data_dir, name in zip((a, b), names, strict=False):
            proc = _start(data_dir, port, None, "--demo")
            running.append(proc)
            out = _read_until(proc, "opsml dev is running")
            assert any(f"Postgres: 127.0.0.1:5432/{name}" in line for line in out), out
            # a clean registry each: the demo card is the first of its name
            assert any("demo RunCard demo/churn version 1.0.0" in line for line in out), out
            _stop(proc)
            assert asyncio.run(_comment(name)) == (
                dev.IDENTITY_COMMENT + (data_dir / "identity").read_text().strip()
            )
        # A copy of a stopped directory gets its own database, and so a clean registry: the
        # event log is kept in (and restored from) the database, not in the directory. (With
        # OPSML_DEV_LOG=s3 it was rebuilt from the copied log and continued the original's.)
        shutil.copytree(b, c)
        proc = _start(c, port, None, "--demo")
        running.append(proc)
        out = _read_until(proc, "opsml dev is running")
        assert any(f"Postgres: 127.0.0.1:5432/{names[2]}" in line for line in out), out
        assert any("demo RunCard demo/churn version 1.0.0" in line for line in out), out
        _stop(proc)

        shutil.rmtree(a)
        again = _start(a, port, None)
        running.append(again)
        refused, _ = again.communicate(timeout=60)
        assert again.returncode == 1, refused
        assert f"the database {names[0]} belongs to another opsml dev data directory" in refused
        assert f'DROP DATABASE "{names[0]}"' in refused, refused
    finally:
        asyncio.run(_drop(*names))


async def test_a_database_is_tied_to_one_data_directory(tmp_path: Path, database_url: str) -> None:
    """claim_database against a real database: recorded, accepted again, refused for another
    directory; a registry with no record is refused for a new directory, adopted by an old one."""
    from registry_core.persistence import db

    conn = await db.connect(database_url)
    try:
        mine, other = uuid.uuid4().hex, uuid.uuid4().hex
        claim = functools.partial(dev.claim_database, conn, data_dir=tmp_path, dsn=database_url)
        await claim(mine, new_dir=True)
        await claim(mine, new_dir=False)
        with pytest.raises(dev.DevStackError, match="belongs to another opsml dev data"):
            await claim(other, new_dir=False)

        # an unrecorded database with a registry in it (made before identities existed)
        await conn.execute(
            await conn.fetchval(
                "SELECT format('COMMENT ON DATABASE %I IS NULL', current_database())"
            )
        )
        await db.migrate(conn)
        await conn.execute(
            "INSERT INTO event_log (event_offset, event_id, event_type, command_id, epoch,"
            " schema_version, applied, occurred_at, payload)"
            " VALUES (0, $1, 'sequencer_started', $2, 1, 1, true, now(), '{}')",
            uuid.uuid4(),
            uuid.uuid4(),
        )
        with pytest.raises(dev.DevStackError, match="already holds a registry"):
            await claim(other, new_dir=True)
        await claim(other, new_dir=False)
        name = database_url.rsplit("/", 1)[1]
        assert await _comment(name) == dev.IDENTITY_COMMENT + other
    finally:
        await conn.close()
