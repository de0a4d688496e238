"""Small helpers shared by the system adapters and workloads."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from bench.config import PG_ADMIN_URL, VENVS, WORK


class Unavailable(RuntimeError):
    """A system could not be installed or started here; the message says exactly why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(ms),
        "p50_ms": _r(percentile(ms, 0.50)),
        "p99_ms": _r(percentile(ms, 0.99)),
        "max_ms": _r(max(ms) if ms else None),
    }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


# ---- ports and HTTP -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"{proc.args!r} exited with {proc.returncode} during start-up")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            conn.request("GET", parts.path or "/")
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise Unavailable(f"{url} did not answer within {timeout:.0f}s (last: {last})")


class HttpTimer:
    """One keep-alive HTTP/1.1 connection; `timed` returns (ms, status, body)."""

    def __init__(self, base_url: str) -> None:
        p = urlsplit(base_url)
        self.host, self.port = p.hostname or "127.0.0.1", p.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def timed(self, method: str, path: str, body: Any = None) -> tuple[float, int, bytes]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            raise
        return (time.perf_counter() - t0) * 1000, resp.status, payload

    def close(self) -> None:
        self.conn.close()


# ---- Postgres -------------------------------------------------------------------------------


def db_url(name: str, driver: str = "postgresql") -> str:
    p = urlsplit(PG_ADMIN_URL)
    return urlunsplit(p._replace(scheme=driver, path=f"/{name}"))


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_scratch_db(prefix: str) -> tuple[str, str]:
    """A fresh, uniquely named database for one script run (inside an event loop): (name, DSN)."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    return name, db_url(name)


async def drop_scratch_db(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_db(name: str) -> None:
    assert name.replace("_", "").isalnum()
    run_async(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    run_async(_admin(f'CREATE DATABASE "{name}"'))


def drop_db(name: str) -> None:
    try:
        run_async(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:  # never let clean-up hide a result
        log(f"could not drop database {name}: {exc}")


def sql(dbname: str, query: str, *args: Any, fetch: bool = True) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(db_url(dbname))
        try:
            if fetch:
                return [dict(r) for r in await conn.fetch(query, *args)]
            await conn.execute(query, *args)
            return []
        finally:
            await conn.close()

    return run_async(go())


# ---- CPU accounting -------------------------------------------------------------------------


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def tree(pids: Iterable[int]) -> list[psutil.Process]:
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
        except psutil.Error:
            continue
        out[p.pid] = p
        try:
            for c in p.children(recursive=True):
                out[c.pid] = c
        except psutil.Error:
            pass
    return list(out.values())


def postgres_processes() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name"]):
        if (p.info.get("name") or "").startswith("postgres"):
            found.append(p)
    return found


@dataclass
class CpuMeter:
    """CPU seconds of the server processes (and, separately, of all Postgres processes)
    between `start` and `stop`. Processes that exit in between are not counted."""

    server_pids: list[int]
    before: dict[int, float] = field(default_factory=dict)
    pg_before: dict[int, float] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self.before = {p.pid: _cpu(p) for p in tree(self.server_pids)}
        self.pg_before = {p.pid: _cpu(p) for p in postgres_processes()}
        return self

    def stop(self) -> dict[str, float]:
        server = sum(_cpu(p) - self.before.get(p.pid, 0.0) for p in tree(self.server_pids))
        pg = sum(_cpu(p) - self.pg_before.get(p.pid, 0.0) for p in postgres_processes())
        return {"server_cpu_s": round(server, 3), "postgres_cpu_s": round(pg, 3)}


# ---- virtual environments -------------------------------------------------------------------


def ensure_venv(name: str, requirements: list[str], *, timeout: float = 900) -> Path:
    """A venv under bench/.work/venvs/<name> with `requirements` installed (once: a marker
    file records what was installed). Returns its python."""
    root = VENVS / name
    py = root / "bin" / "python"
    marker = root / ".bench-installed"
    want = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()
    if py.exists() and marker.exists() and marker.read_text() == want:
        return py
    VENVS.mkdir(parents=True, exist_ok=True)
    logf = VENVS / f"{name}.log"
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"creating venv {name} ({' '.join(requirements)}); log: {logf.relative_to(WORK.parent)}")
    with open(logf, "wb") as out:
        if not py.exists():
            r = subprocess.run([base, "-m", "venv", str(root)], stdout=out, stderr=out)
            if r.returncode != 0:
                raise Unavailable(f"python -m venv failed for {name} (see {logf.name})")
        try:
            r = subprocess.run(
                [str(py), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
                stdout=out,
                stderr=out,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(
                f"pip install {requirements} timed out after {timeout:.0f}s"
            ) from None
    if r.returncode != 0:
        tail = logf.read_text(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"pip install {' '.join(requirements)} failed: {' | '.join(tail)}")
    marker.write_text(want)
    return py


# ---- processes ------------------------------------------------------------------------------


def spawn(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path,
    cwd: Path | None = None,
    stdout_pipe: bool = False,
    stdin_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")
    try:
        return subprocess.Popen(
            list(args),
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if stdout_pipe else out,
            stderr=out,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        out.close()


def stop_groups(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """SIGTERM every process group at once, then wait for all (SIGKILL after `timeout`)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        stop_group(proc, timeout=max(0.1, deadline - time.monotonic()))


def settle(pids: list[int], *, window: float = 1.0, limit: float = 90) -> float:
    """Wait until the processes (and their children) are done starting: MLflow's huey consumers
    and the drivers still import after a health check answers. Settled = under 0.1 CPU s per
    `window`, or a steady rate (within 25% of the previous window) under 0.5 CPU s per window
    (ours' worker polls the broker while idle, so its stack never reaches zero). Returns the
    seconds waited."""
    t0 = time.perf_counter()
    prev: float | None = None
    while time.perf_counter() - t0 < limit:
        meter = CpuMeter(pids).start()
        time.sleep(window)
        rate = meter.stop()["server_cpu_s"]
        if rate < 0.1 or (prev is not None and rate < 0.5 and abs(rate - prev) <= 0.25 * prev):
            break
        prev = rate
    return time.perf_counter() - t0


def _cpu_busy_idle() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, idle


def wait_quiet(*, window: float = 1.0, busy_cores: float = 0.35, limit: float = 60) -> float:
    """Wait until the whole machine is quiet: under `busy_cores` cores busy over `window`
    (/proc/stat, so it sees what `settle` cannot: Postgres' background work after the peers'
    migrations, processes outside the systems' trees). Returns the seconds waited."""
    t0 = time.perf_counter()
    ticks = os.sysconf("SC_CLK_TCK")
    while time.perf_counter() - t0 < limit:
        b0, _ = _cpu_busy_idle()
        w0 = time.perf_counter()
        time.sleep(window)
        b1, _ = _cpu_busy_idle()
        if (b1 - b0) / ticks / (time.perf_counter() - w0) < busy_cores:
            break
    return time.perf_counter() - t0


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after `timeout`."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def probe_version(python: Path, package: str) -> str:
    """The installed version of `package` in a peer's venv, from its metadata (importing MLflow
    just to print its version costs ~2 s of CPU; the server start shows that it imports)."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise Unavailable(f"{package} is not installed in its venv: {out.stderr[-400:]}")
    return out.stdout.strip()
