"""Run driver processes for a system, all released at once, and collect their results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.config import DRIVERS, WORK
from bench.systems.base import System
from bench.util import Unavailable, log, spawn


class Profiler:
    """py-spy record on chosen server pids while a workload runs (bench --profile)."""

    def __init__(self, outdir: Path, label: str, pids: dict[str, int], rate: int = 250) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outdir = outdir
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            log("py-spy not installed in this venv: no profile (pip install py-spy)")
            return
        outdir.mkdir(parents=True, exist_ok=True)
        for role, pid in pids.items():
            out = outdir / f"{label}-{role}.txt"
            self.procs.append(
                spawn(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(rate),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "-o",
                        str(out),
                    ],
                    log_path=outdir / f"{label}-{role}.log",
                )
            )
        time.sleep(1.0)  # let py-spy attach

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


class DriverPool:
    """Persistent driver processes of one system (`<driver>.py --serve DIR`), reused by every
    workload of a run: a workload with k jobs uses the first k of them (more are started when
    needed). Their imports (the system's client library) are paid once per run, not per job."""

    def __init__(self, system: System) -> None:
        assert system.python is not None
        self.system = system
        self.root = WORK / "jobs" / f"pool-{system.key}-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        self.next: list[int] = []

    def ensure(self, k: int) -> None:
        while len(self.procs) < k:
            i = len(self.procs)
            d = self.root / f"d{i}"
            d.mkdir(parents=True)
            cmd = [str(self.system.python), str(DRIVERS / self.system.driver), "--serve", str(d)]
            self.procs.append(
                spawn(
                    cmd,
                    env=self.system.driver_env(),
                    log_path=d / "driver.log",
                    cwd=d,
                    stdin_pipe=True,
                )
            )
            self.dirs.append(d)
            self.next.append(0)

    def close(self) -> None:
        for p in self.procs:
            if p.stdin is not None:
                try:
                    p.stdin.close()  # EOF: the driver exits
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def run(
        self, system: System, jobs: list[dict[str, Any]], timeout: float
    ) -> list[dict[str, Any]]:
        """`system`: whose jobs these are (a shared pool serves several: the job carries the
        server's address)."""
        self.ensure(len(jobs))
        go = self.root / f"go-{uuid.uuid4().hex[:8]}"
        base = {**system.driver_job(), "_go": str(go)}
        slots = []
        for i, job in enumerate(jobs):
            n = self.next[i]
            self.next[i] += 1
            path = self.dirs[i] / f"job-{n}.json"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps({**base, **job}))
            os.replace(tmp, path)
            stdin = self.procs[i].stdin
            assert stdin is not None
            stdin.write(f"{n}\n".encode())
            stdin.flush()
            slots.append((i, n))
        try:
            self._wait(
                [Path(f"{self.dirs[i] / f'job-{n}.json'}.ready") for i, n in slots], 300, "ready"
            )
            go.touch()
            results = [self.dirs[i] / f"res-{n}.json" for i, n in slots]
            self._wait(results, timeout, "finished")
            return [json.loads(r.read_text()) for r in results]
        except BaseException:
            self._kill()  # a failed or interrupted workload leaves no half-busy driver behind
            raise

    def _wait(self, paths: list[Path], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not all(p.exists() for p in paths):
            for i, p in enumerate(self.procs[: len(paths)]):
                if p.poll() is not None:
                    raise Unavailable(
                        f"driver {i} exited {p.returncode}: {_tail(self.dirs[i] / 'driver.log')}"
                    )
            if time.monotonic() > deadline:
                raise Unavailable(f"drivers not {what} after {timeout:.0f} s")
            time.sleep(0.005)

    def _kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        self.dirs.clear()
        self.next.clear()
        self.root = WORK / "jobs" / f"pool-{self.system.key}-{uuid.uuid4().hex[:8]}"


_POOLS: dict[object, DriverPool] = {}
_USERS: dict[object, set[int]] = {}
_LOCK = threading.Lock()  # bench set-up warms the pools from several threads


def _pool_key(system: System) -> object:
    # Systems with the same pool key (MLflow behind uvicorn and behind gunicorn: same venv, same
    # driver, the server's address comes with every job) share one set of driver processes.
    return system.driver_pool_key or id(system)


def _pool(system: System) -> DriverPool:
    key = _pool_key(system)
    with _LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = DriverPool(system)
        _USERS.setdefault(key, set()).add(id(system))
        return pool


def warm_pool(system: System, k: int) -> None:
    """Start k persistent drivers now (bench set-up), so that their imports are not paid during
    the workloads; they wait on stdin at no CPU cost."""
    pool = _pool(system)
    with _LOCK:
        pool.ensure(k)


def pool_pids(system: System) -> list[int]:
    pool = _POOLS.get(_pool_key(system))
    return [p.pid for p in pool.procs] if pool is not None else []


def close_pool(system: System) -> None:
    """The system is done with its drivers; the last system of a shared pool closes it."""
    key = _pool_key(system)
    users = _USERS.get(key, set())
    users.discard(id(system))
    if not users:
        pool = _POOLS.pop(key, None)
        if pool is not None:
            pool.close()


def run_drivers(
    system: System,
    jobs: list[dict[str, Any]],
    *,
    timeout: float = 1800,
    client_profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Run one driver job per process, all released at once, and return their results (a failed
    driver raises Unavailable with its log's tail). The system's persistent drivers serve the
    jobs; with `client_profile` (bench --profile) a fresh process per job, the first one under
    py-spy."""
    if client_profile is None:
        return _pool(system).run(system, jobs, timeout)
    return run_once(system, jobs, timeout=timeout, client_profile=client_profile)


def run_once(
    system: System,
    jobs: list[dict[str, Any]],
    *,
    timeout: float = 1800,
    client_profile: Path | None = None,
) -> list[dict[str, Any]]:
    """One new driver process per job (the original protocol; used for profiling)."""
    assert system.python is not None
    d = WORK / "jobs" / uuid.uuid4().hex[:12]
    d.mkdir(parents=True)
    go = d / "go"
    procs = []
    base = {**system.driver_job()}
    for i, job in enumerate(jobs):
        jp = d / f"job{i}.json"
        jp.write_text(json.dumps({**base, **job}))
        cmd = [
            str(system.python),
            str(DRIVERS / system.driver),
            str(jp),
            str(d / f"res{i}.json"),
            str(go),
        ]
        if client_profile is not None and i == 0:
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            if Path(exe).exists():
                client_profile.parent.mkdir(parents=True, exist_ok=True)
                cmd = [
                    exe,
                    "record",
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "-o",
                    str(client_profile),
                    "--",
                    *cmd,
                ]
        procs.append(spawn(cmd, env=system.driver_env(), log_path=d / f"driver{i}.log", cwd=d))
    try:
        deadline = time.monotonic() + 300
        while not all((d / f"job{i}.json.ready").exists() for i in range(len(jobs))):
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise Unavailable(
                        f"driver failed while preparing: {_tail(d / f'driver{i}.log')}"
                    )
            if time.monotonic() > deadline:
                raise Unavailable("drivers not ready after 300 s")
            time.sleep(0.02)
        go.touch()
        end = time.monotonic() + timeout
        for i, p in enumerate(procs):
            try:
                p.wait(max(1.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Unavailable(f"driver {i} still running after {timeout:.0f}s") from None
            if p.returncode != 0:
                raise Unavailable(
                    f"driver {i} exited {p.returncode}: {_tail(d / f'driver{i}.log')}"
                )
        return [json.loads((d / f"res{i}.json").read_text()) for i in range(len(jobs))]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(d, ignore_errors=True)


def _tail(path: Path, n: int = 6) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])
