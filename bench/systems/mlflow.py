"""MLflow 3.x model registry: `mlflow server` on a throw-away Postgres database, in its own venv.

Two server set-ups: uvicorn with one worker (MLflow 3's default server, FastAPI app) and gunicorn
with two sync workers (the Flask app). Multi-worker uvicorn is not benchmarked: it adds ~44 ms
per request through a known uvicorn TCP_NODELAY issue, which would measure uvicorn, not MLflow.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from bench.config import SPACE
from bench.systems.base import ReadTarget, Request, System
from bench.util import (
    create_db,
    db_url,
    drop_db,
    ensure_venv,
    free_port,
    probe_version,
    spawn,
    sql,
    stop_groups,
    wait_http,
)

REQUIREMENTS = ["mlflow>=3,<4", "psycopg2-binary"]
# MLflow 3 sends usage telemetry by default; nothing may leave this machine.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


class MlflowUvicorn(System):
    key = "mlflow"
    label = "MLflow 3 (uvicorn, 1 worker)"
    driver = "mlflow_driver.py"
    server_args: tuple[str, ...] = ("--workers", "1")
    needs_name_setup = True
    first_version = "1"
    driver_pool_key = "mlflow"  # MlflowClient(job["uri"]): both MLflow set-ups share drivers

    def prepare(self) -> None:
        self.python = ensure_venv("mlflow", REQUIREMENTS)
        self.info["version"] = probe_version(self.python, "mlflow")

    def start(self) -> None:
        assert self.python is not None
        create_db(self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            db_url(self.db, "postgresql+psycopg2"),
            "--artifacts-destination",
            str(self.workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.server_args,
        ]
        proc = spawn(args, env=NO_TELEMETRY, log_path=self.logdir / f"{self.key}-server.log")
        self.procs.append(proc)
        wait_http(self.uri + "/health", 180, proc)
        self.info["server"] = "mlflow server " + " ".join(self.server_args)

    def stop(self) -> None:
        stop_groups(self.procs, timeout=2)  # a throw-away server: no graceful drain needed
        drop_db(self.db)

    def driver_env(self) -> dict[str, str]:
        return {**NO_TELEMETRY, "MLFLOW_TRACKING_URI": self.uri}

    def driver_job(self) -> dict:
        return {"uri": self.uri, "space": SPACE}

    @staticmethod
    def model_name(name: str) -> str:
        return f"{SPACE}-{name}"  # MLflow has no spaces: prefix the name

    def seed(self, start_name: int, n_names: int, per_name: int) -> str:
        ms = int(time.time() * 1000)
        a, b = start_name, start_name + n_names - 1
        sql(
            self.db,
            "INSERT INTO registered_models (name, creation_time, last_updated_time, workspace)"
            " SELECT $1 || lpad(i::text, 6, '0'), $2::bigint, $2::bigint, 'default'"
            " FROM generate_series($3::int, $4::int) AS i",
            f"{SPACE}-seed-",
            ms,
            a,
            b,
            fetch=False,
        )
        sql(
            self.db,
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time,"
            " current_stage, source, status, storage_location, workspace)"
            " SELECT $1 || lpad(i::text, 6, '0'), v, $2::bigint + v, $2::bigint + v, 'None',"
            " 's3://bench/seed', 'READY', 's3://bench/seed', 'default'"
            " FROM generate_series($3::int, $4::int) AS i, generate_series(1, $5::int) AS v",
            f"{SPACE}-seed-",
            ms,
            a,
            b,
            per_name,
            fetch=False,
        )
        sql(self.db, "ANALYZE", fetch=False)
        return "direct SQL inserts into registered_models/model_versions"

    def sample_targets(self, k: int) -> list[ReadTarget]:
        rows = sql(
            self.db,
            "SELECT name, version FROM model_versions WHERE name LIKE $1"
            " ORDER BY random() LIMIT $2",
            f"{SPACE}-seed-%",
            k,
        )
        return [ReadTarget(r["name"], f"{r['name']}/{r['version']}") for r in rows]

    def count_versions(self) -> int:
        return int(sql(self.db, "SELECT count(*) AS n FROM model_versions")[0]["n"])

    def read_requests(self, t: ReadTarget) -> dict[str, Request | None]:
        search = "/api/2.0/mlflow/model-versions/search?"
        flt = f"name='{t.name}'"
        name, version = t.uid.rsplit("/", 1)
        return {
            "latest": Request(
                "GET",
                search
                + urlencode({"filter": flt, "order_by": "version_number DESC", "max_results": 1}),
            ),
            "get_by_uid": Request(
                "GET",
                "/api/2.0/mlflow/model-versions/get?"
                + urlencode({"name": name, "version": version}),
            ),
            "list_100": Request(
                "GET",
                search
                + urlencode({"filter": flt, "order_by": "version_number DESC", "max_results": 100}),
            ),
            "latest_caret": None,  # integer versions: no semver ranges
        }

    def versions_in_store(self, name: str) -> list[str]:
        rows = sql(
            self.db,
            "SELECT version::text AS v FROM model_versions WHERE name = $1",
            self.model_name(name),
        )
        return [r["v"] for r in rows]

    def ordinal(self, version: str) -> int:
        return int(version)


class MlflowGunicorn(MlflowUvicorn):
    key = "mlflow-gunicorn"
    label = "MLflow 3 (gunicorn, 2 workers)"
    server_args = ("--workers", "2", "--gunicorn-opts", "--timeout 120")
