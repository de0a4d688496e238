"""OpsML 2.2.4 (`opsml[server,postgres]==2.2.4`) in its own venv, on a throw-away Postgres
database. `opsml-uvicorn-server` binds 0.0.0.0 with no host option, so the harness runs the same
app factory (`opsml.app.main:run_app`) under uvicorn bound to 127.0.0.1."""

from __future__ import annotations

import shutil
import time

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

REQUIREMENTS = ["opsml[server,postgres]==2.2.4"]
TABLE = '"OPSML_RUN_REGISTRY"'


class Opsml224(System):
    key = "opsml"
    label = "OpsML 2.2.4"
    driver = "opsml_driver.py"
    max_versions_per_name = 100  # OpsML 2.x repeats 1.100.0 past 100 versions of a name

    def prepare(self) -> None:
        self.python = ensure_venv("opsml", REQUIREMENTS)
        self.info["version"] = probe_version(self.python, "opsml")

    def start(self) -> None:
        assert self.python is not None
        create_db(self.db)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        env = {
            "OPSML_TRACKING_URI": db_url(self.db, "postgresql+psycopg2"),
            "OPSML_STORAGE_URI": str(self.workdir / "storage"),
        }
        proc = spawn(
            [
                str(self.python),
                "-m",
                "uvicorn",
                "opsml.app.main:run_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            log_path=self.logdir / "opsml-server.log",
        )
        self.procs.append(proc)
        wait_http(self.uri + "/opsml/healthcheck", 120, proc)
        self.info["server"] = "uvicorn opsml.app.main:run_app --factory --workers 1"

    def stop(self) -> None:
        stop_groups(self.procs, timeout=2)  # a throw-away server: no graceful drain needed
        drop_db(self.db)
        # OpsML 2.2.4 lower-cases OPSML_STORAGE_URI: its files land in a sibling directory
        lowered = self.workdir.with_name(self.workdir.name.lower())
        if lowered != self.workdir:
            shutil.rmtree(lowered, ignore_errors=True)

    def driver_env(self) -> dict[str, str]:
        return {"OPSML_TRACKING_URI": self.uri}

    def driver_job(self) -> dict:
        return {"uri": self.uri, "space": SPACE}

    def seed(self, start_name: int, n_names: int, per_name: int) -> str:
        ts = int(time.time() * 1_000_000)
        sql(
            self.db,
            f"INSERT INTO {TABLE} (uid, date, timestamp, app_env, name, repository, version,"
            " contact, tags, datacard_uids, modelcard_uids, artifact_uris)"
            " SELECT md5(i::text || '/' || v::text), to_char(now(), 'YYYY-MM-DD'), $1::bigint + v,"
            " 'development', 'seed-' || lpad(i::text, 6, '0'), $2, '1.' || (v - 1) || '.0',"
            " 'bench', '{}', '[]', '[]', '{}'"
            " FROM generate_series($3::int, $4::int) AS i, generate_series(1, $5::int) AS v",
            ts,
            SPACE,
            start_name,
            start_name + n_names - 1,
            per_name,
            fetch=False,
        )
        sql(self.db, "ANALYZE", fetch=False)
        return f"direct SQL inserts into {TABLE.strip(chr(34))}"

    def sample_targets(self, k: int) -> list[ReadTarget]:
        rows = sql(
            self.db,
            f"SELECT name, uid FROM {TABLE} WHERE name LIKE 'seed-%' ORDER BY random() LIMIT $1",
            k,
        )
        return [ReadTarget(r["name"], r["uid"]) for r in rows]

    def count_versions(self) -> int:
        return int(sql(self.db, f"SELECT count(*) AS n FROM {TABLE}")[0]["n"])

    def read_requests(self, t: ReadTarget) -> dict[str, Request | None]:
        base = {"registry_type": "run", "repository": SPACE, "name": t.name}
        return {
            "latest": Request("POST", "/opsml/cards/list", {**base, "limit": 1}),
            "get_by_uid": Request(
                "POST", "/opsml/cards/list", {"registry_type": "run", "uid": t.uid}
            ),
            "list_100": Request("POST", "/opsml/cards/list", {**base, "limit": 100}),
            "latest_caret": Request(
                "POST", "/opsml/cards/list", {**base, "version": "^1.2", "limit": 1}
            ),
        }

    def versions_in_store(self, name: str) -> list[str]:
        rows = sql(
            self.db, f"SELECT version FROM {TABLE} WHERE name = $1 AND repository = $2", name, SPACE
        )
        return [r["version"] for r in rows]
