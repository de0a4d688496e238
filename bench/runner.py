"""Run driver processes for a system, all released at once, and collect their results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
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


def run_drivers(
    system: System,
    jobs: list[dict[str, Any]],
    *,
    timeout: float = 1800,
    client_profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Start one driver process per job, wait until all are prepared, release them together,
    and return their results (a failed driver raises Unavailable with its log's tail)."""
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
