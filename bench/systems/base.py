"""The small interface every system adapter implements."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import WORK


@dataclass(frozen=True)
class ReadTarget:
    name: str
    uid: str  # what "get by id" takes: a card uid, or an MLflow "name/version"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any = None


class System:
    """start() brings the system up on loopback with a throw-away database; stop() tears it
    down and drops the database. Registration runs in driver processes (bench/drivers/<driver>)
    with `python` and `driver_env()`."""

    key: str = ""
    label: str = ""
    driver: str = ""
    # None = unlimited. OpsML 2.x repeats versions past 100 per name, so workloads keep under.
    max_versions_per_name: int | None = None
    bulk_threads: int = 16
    needs_name_setup = False  # MLflow: a registered model must exist before its versions
    # Systems with the same key share their persistent driver processes (bench/runner.py); a
    # driver must then take the server's address from each job, never from its environment.
    driver_pool_key: str | None = None
    first_version = "1.0.0"
    notes: list[str]

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.db = f"bench_{self.key.replace('-', '_')}_{run_id}"
        self.workdir = WORK / "data" / f"{self.key}-{run_id}"
        self.logdir = WORK / "logs" / run_id
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.python: Path | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.notes = []
        self.info: dict[str, Any] = {}

    # lifecycle
    def prepare(self) -> None:
        """Install what the system needs (its venv); raise Unavailable with the reason."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    # registration
    def driver_env(self) -> dict[str, str]:
        return {}

    def driver_job(self) -> dict[str, Any]:
        return {}

    # accounting
    def server_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def named_pids(self) -> dict[str, int]:
        """Processes worth profiling, by role."""
        return {}

    # reads
    def seed(self, start_name: int, n_names: int, per_name: int) -> str:
        """Add n_names x per_name versions (names seed-<start_name>...). Returns how."""
        raise NotImplementedError

    def sample_targets(self, k: int) -> list[ReadTarget]:
        raise NotImplementedError

    def count_versions(self) -> int:
        raise NotImplementedError

    def read_requests(self, t: ReadTarget) -> dict[str, Request | None]:
        """latest / get_by_uid / list_100 / latest_caret (None: not applicable)."""
        raise NotImplementedError

    # correctness
    def versions_in_store(self, name: str) -> list[str]:
        raise NotImplementedError

    def ordinal(self, version: str) -> int:
        """Position of a version in its name's sequence (for gap counting)."""
        major, minor, _patch = (int(x) for x in version.split("+")[0].split("-")[0].split("."))
        return major * 1_000_000 + minor


def seed_name(i: int) -> str:
    return f"seed-{i:06d}"
