"""Ours: the full local stack from `opsml dev` (SeaweedFS, Tansu, worker, API) on a throw-away
database of the local Postgres."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import psutil

from bench.config import SPACE
from bench.systems.base import ReadTarget, Request, System, seed_name
from bench.util import (
    Unavailable,
    create_db,
    db_url,
    drop_db,
    free_port,
    log,
    spawn,
    sql,
    stop_group,
    stop_groups,
    tree,
    wait_http,
)


class Ours(System):
    key = "ours"
    label = "opsml-registry (ours: Tansu in memory + worker + API)"
    driver = "ours_driver.py"

    def prepare(self) -> None:
        self.python = Path(sys.executable)
        try:
            import client  # noqa: F401
            import workers  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"the project is not installed in this venv: {exc}") from exc

    def start(self) -> None:
        """The pieces of `opsml dev` composed by hand: Tansu (in-memory log, like the tests'
        brokers), `opsml worker` and `opsml api` on a throw-away database."""
        from workers.dev import start_tansu

        create_db(self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        kafka_port = free_port()
        self.procs.append(start_tansu(kafka_port, log_path=self.logdir / "ours-tansu.log"))
        # Artifacts (W6) go to a local directory inside the throw-away work dir, like the peers'
        # (MLflow --artifacts-destination, OpsML OPSML_STORAGE_URI): local disk for everyone.
        self.storage_dir = self.workdir / "artifacts"
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "OPSML_DATABASE_URL": db_url(self.db),
            "OPSML_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "OPSML_STORAGE_URI": str(self.storage_dir),
            "OPSML_LOG_LEVEL": "warning",
        }
        api_args = ["--host", "127.0.0.1", "--port", str(self.port)]
        for role, extra in (("worker", []), ("api", api_args)):
            self.procs.append(
                spawn(
                    [sys.executable, "-m", "workers.cli", role, *extra],
                    env=self.env,
                    log_path=self.logdir / f"ours-{role}.log",
                )
            )
        self._wait_healthy(60)
        self.info = {
            "server": "Tansu (memory://) + opsml worker + opsml api (from workers.dev)",
            "storage": "local directory (OPSML_STORAGE_URI under bench/.work/data)",
        }

    def restart_worker(self, label: str, timeout: float = 300) -> float:
        """Stop the worker and start a new one; seconds from spawn to its 'consuming commands'
        log line (lock, epoch claim, marker, catch-up, consumer positioned)."""
        worker = self.procs[1]
        stop_group(worker, timeout=30)
        logf = self.logdir / f"ours-worker-{label}.log"
        t0 = time.perf_counter()
        proc = spawn(
            [sys.executable, "-m", "workers.cli", "worker"],
            env={**self.env, "OPSML_LOG_LEVEL": "info"},
            log_path=logf,
        )
        self.procs[1] = proc
        deadline = time.monotonic() + timeout
        while "consuming commands" not in logf.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {logf.read_text()[-600:]}")
            time.sleep(0.005 if time.perf_counter() - t0 < 5 else 0.2)
        return time.perf_counter() - t0

    def _wait_healthy(self, timeout: float) -> None:
        import json
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise Unavailable(f"{p.args!r} exited with {p.returncode} during start-up")
            try:
                with urllib.request.urlopen(self.uri + "/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("sequencer", {}).get("epoch"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise Unavailable("the stack did not become healthy in time")

    def stop(self) -> None:
        survivors = tree(self.server_pids())
        stop_groups(self.procs, timeout=5)  # a throw-away stack: no graceful drain needed
        for p in survivors:  # children of `opsml dev` run in their own sessions
            try:
                if p.is_running():
                    p.kill()
            except Exception:
                pass
        drop_db(self.db)

    def driver_env(self) -> dict[str, str]:
        return {"OPSML_TRACKING_URI": self.uri}

    def driver_job(self) -> dict:
        return {"uri": self.uri, "space": SPACE}

    def named_pids(self) -> dict[str, int]:
        found = {}
        for p in tree(self.server_pids()):
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            for role in ("worker", "api"):
                if cmd.endswith(f"workers.cli {role}") or f"workers.cli {role} " in cmd:
                    found[role] = p.pid
        return found

    # Seeding through register_cards is the honest path, but at the W3 rate measured here
    # (hundreds of cards/s) 100k versions would take minutes: larger seeds go straight into the
    # read table (what the read API queries), and the result says which was used.
    SEED_VIA_CLIENT_MAX = 20_000

    def seed(self, start_name: int, n_names: int, per_name: int) -> str:
        total = n_names * per_name
        t = time.perf_counter()
        if total <= self.SEED_VIA_CLIENT_MAX:
            from bench.runner import run_drivers

            # round-robin over names, so every chunk carries many names (like real traffic)
            names = [seed_name(start_name + i) for _ in range(per_name) for i in range(n_names)]
            (res,) = run_drivers(self, [{"op": "bulk", "names": names, "chunk": 5000}])
            if res["error_count"]:
                raise RuntimeError(f"seeding failed: {res['errors'][:3]}")
            how = "register_cards in chunks of 5,000"
        else:
            from registry_core.domain.versioning import sort_parts

            release_key = sort_parts("1.0.0")[3]
            sql(
                self.db,
                "INSERT INTO cards (uid, registry, space, name, version, major, minor, patch,"
                " pre_key, card_type, tags, metadata, attributes, status, created_at, command_id,"
                " actor, event_offset)"
                " SELECT gen_random_uuid(), 'run', $1, 'seed-' || lpad(i::text, 6, '0'),"
                " '1.' || (v - 1) || '.0', 1, v - 1, 0, $2, 'RunCard', '{}', '{}',"
                ' \'{"parameters": {}, "datacard_uids": [], "modelcard_uids": []}\','
                " 'active', now(), gen_random_uuid(), 'bench', -1"
                " FROM generate_series($3::int, $4::int) AS i, generate_series(1, $5::int) AS v",
                SPACE,
                release_key,
                start_name,
                start_name + n_names - 1,
                per_name,
                fetch=False,
            )
            how = "direct SQL inserts into cards (the read model; no events)"
        # as the peers' seeding does: fresh statistics, so that an autovacuum ANALYZE of the new
        # rows does not land in the timed reads
        sql(self.db, "ANALYZE cards", fetch=False)
        log(f"ours: seeded {total} versions in {time.perf_counter() - t:.1f}s ({how})")
        return how

    def sample_targets(self, k: int) -> list[ReadTarget]:
        rows = sql(
            self.db,
            "SELECT name, uid::text AS uid FROM cards WHERE space = $1 AND name LIKE 'seed-%'"
            " ORDER BY random() LIMIT $2",
            SPACE,
            k,
        )
        return [ReadTarget(r["name"], r["uid"]) for r in rows]

    def count_versions(self) -> int:
        return int(sql(self.db, "SELECT count(*) AS n FROM cards")[0]["n"])

    def read_requests(self, t: ReadTarget) -> dict[str, Request | None]:
        q = {"registry": "run", "space": SPACE, "name": t.name}
        return {
            "latest": Request("GET", "/api/v1/cards?" + urlencode({**q, "limit": 1})),
            "get_by_uid": Request("GET", f"/api/v1/cards/{quote(t.uid)}"),
            "list_100": Request("GET", "/api/v1/cards?" + urlencode({**q, "limit": 100})),
            "latest_caret": Request(
                "GET", "/api/v1/cards?" + urlencode({**q, "version": "^1.2", "limit": 1})
            ),
        }

    def versions_in_store(self, name: str) -> list[str]:
        rows = sql(
            self.db,
            "SELECT version FROM cards WHERE registry = 'run' AND space = $1 AND name = $2",
            SPACE,
            name,
        )
        return [r["version"] for r in rows]


class OursDev(Ours):
    """`opsml dev` exactly as a data scientist runs it: Tansu keeps its log in memory, written
    back from the Postgres archive at every start (OPSML_DEV_LOG=s3 in the harness's environment
    runs the earlier layout, Tansu's log in SeaweedFS). Its latency against the size of the log
    and across a restart: bench/dev_stack.py."""

    key = "ours-dev"
    label = "opsml-registry via `opsml dev` (Tansu log in memory, restored from Postgres)"

    def start(self) -> None:
        create_db(self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        logf = self.logdir / "ours-dev.log"
        proc = spawn(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "dev",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.workdir),
                "--database-url",
                db_url(self.db),
            ],
            env={"OPSML_LOG_LEVEL": "warning"},
            log_path=logf,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 120
        while "opsml dev is running" not in logf.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"opsml dev did not start: {logf.read_text()[-800:]}")
            time.sleep(0.1)
        wait_http(self.uri + "/healthz", 30)
        self.info = {"server": "opsml dev --port P --data-dir D --database-url <throwaway>"}


class OursServer(Ours):
    """The same stack, driven as a server registry (issue 17): the driver's
    OPSML_TRACKING_URI is the database's URI, so reads and outcome waits go to Postgres directly
    (LISTEN/NOTIFY) and files straight to the store - one hop fewer than through the API."""

    key = "ours-server"
    label = "opsml-registry, server registry (OPSML_TRACKING_URI = Postgres; Tansu + worker)"

    def driver_env(self) -> dict[str, str]:
        return {"OPSML_TRACKING_URI": db_url(self.db)}

    def driver_job(self) -> dict:
        return {"uri": db_url(self.db), "space": SPACE}

    def seed(self, start_name: int, n_names: int, per_name: int) -> str:
        # W4 times HTTP requests to the API (and W5 is the worker's): the same as `ours` here
        from bench.workloads.base import PendingFeature

        raise PendingFeature(
            "W4 times the HTTP API's reads: the server registry reads in-process (its W1 and"
            " W3 are the comparison; see bench.server_mode)"
        )
