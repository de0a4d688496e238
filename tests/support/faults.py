"""Fault-injection helpers for tests/faults: a private Postgres server that can be stopped and
started, a TCP proxy that delays traffic, peak-memory readings, and the registration checks
every fault test shares. Real processes and sockets only, on loopback."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from client import RegistryError
from workers import procs


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found (install the PostgreSQL server binaries)")
    return path


def available() -> bool:
    try:
        _pg_bin("initdb")
        _pg_bin("pg_ctl")
        return True
    except RuntimeError:
        return False


class PrivatePostgres:
    """A Postgres server of the test's own (initdb into a temporary directory, a free loopback
    port, trust auth, fsync off), so that stopping it disturbs nobody else."""

    def __init__(self) -> None:
        (self.port,) = procs.free_ports(1)
        self.root = Path(tempfile.mkdtemp(prefix="opsml-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        # Postgres refuses to run as root: run it as the `postgres` user then.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user)
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        self.starts = 0
        self.stops = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", self.user, "--", *args] if self.user else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log),
                  "-w", "-t", "30", "start")  # fmt: skip
        self.starts += 1

    def stop(self, mode: str = "fast") -> None:
        """`fast`: backends are told to terminate (clients see "terminating connection due to
        administrator command"); `immediate`: like a crash (no shutdown checkpoint, crash
        recovery on the next start)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        self.stops += 1

    def running(self) -> bool:
        return (
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "status", check=False).returncode
            == 0
        )

    def close(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


async def terminate_backends(admin_url: str, database: str) -> int:
    """pg_terminate_backend every connection to `database` (what a failover or an operator
    does); returns how many were terminated."""
    conn = await asyncpg.connect(admin_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()


@dataclass
class DelayProxy:
    """A loopback TCP proxy adding `delay` seconds of one-way latency to every chunk in both
    directions (order kept; throughput is not capped), run on its own thread and event loop so
    that the test's clients do not compete with it."""

    target_host: str
    target_port: int
    delay: float
    port: int = 0
    chunks: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.AbstractServer | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> DelayProxy:
        (self.port,) = procs.free_ports(1)
        self._thread = threading.Thread(target=self._main, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("delay proxy did not start")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                self.chunks += 1
                queue.put_nowait((loop.time() + self.delay, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))
            try:
                await sender
            except OSError:
                pass
            writer.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a live process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


class PeakMemory:
    """Samples a process's VmHWM; `peak_mb` is the largest seen (over several processes if the
    process is replaced, e.g. a killed worker)."""

    def __init__(self) -> None:
        self.peak_kb = 0

    def sample(self, pid: int) -> None:
        try:
            self.peak_kb = max(self.peak_kb, memory_kb(pid).get("VmHWM", 0))
        except (FileNotFoundError, ProcessLookupError):
            pass

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


@dataclass
class Outcomes:
    """What the clients of a fault test were told."""

    acked: list[tuple[str, str, str]] = field(default_factory=list)  # (name, version, uid)
    errors: list[str] = field(default_factory=list)
    retried: Counter[str] = field(default_factory=Counter)  # client/retry.py's counts

    async def register(self, reg: Any, card: Any) -> bool:
        """Register `card` and record what the client was told; True when acknowledged."""
        try:
            got = await reg.register_card(card)
        except RegistryError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return False
        self.acked.append((got.name, str(got.version), str(got.uid)))
        return True


async def check_registrations(database_url: str, space: str, outcomes: Outcomes) -> None:
    """Every acknowledged registration is stored exactly once with the version and uid its
    client was told; nothing else is stored (unless a client saw an error for it, which may
    have been applied anyway); versions per name have no gaps or duplicates; each command was
    decided once."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT name, version, uid::text FROM cards WHERE space = $1", space
        )
        decided_twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT command_id FROM event_log WHERE applied AND"
            " event_type = 'card_registered' GROUP BY command_id HAVING count(*) > 1) d"
        )
    finally:
        await conn.close()
    stored = [(r["name"], r["version"], r["uid"]) for r in rows]
    assert len(stored) == len(set(stored))
    acked = sorted(outcomes.acked)
    assert len(acked) == len(set(acked)), "a client was told the same card twice"
    missing = set(acked) - set(stored)
    assert not missing, (
        f"{len(missing)} acknowledged registrations are not stored: {sorted(missing)[:5]}"
    )
    extra = set(stored) - set(acked)
    assert len(extra) <= len(outcomes.errors), (
        f"{len(extra)} stored cards nobody was told about, {len(outcomes.errors)} client errors"
    )
    assert decided_twice == 0
    by_name: dict[str, list[int]] = defaultdict(list)
    for name, version, _ in stored:
        by_name[name].append(int(version.split(".")[1]))
    for name, minors in by_name.items():
        assert sorted(minors) == list(range(len(minors))), f"{name}: gaps or duplicates {minors}"


def replay_identical(env: dict[str, str], log: Path | None = None) -> None:
    """`opsml replay --verify-only` from offset 0 of the log gives the live tables."""
    verify = subprocess.run(
        [sys.executable, "-m", "workers.cli", "replay", "--verify-only"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if log is not None:
        log.write_text(verify.stdout + "\n----- stderr -----\n" + verify.stderr)
    assert verify.returncode == 0 and "identical" in verify.stdout, (
        verify.stdout[-2000:] + verify.stderr[-2000:]
    )


def count_in(text: str, needles: Iterable[str]) -> dict[str, int]:
    return {n: text.count(n) for n in needles}


def wait_until(predicate: object, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.05)
    raise TimeoutError(what)
