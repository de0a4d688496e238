"""Driver for MLflow 3.x's model registry (MlflowClient over HTTP), run in MLflow's own venv."""

from __future__ import annotations

import logging
import os
import time

from _common import execute_peer, main

logging.getLogger("mlflow").setLevel(logging.WARNING)

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

SOURCE = "s3://bench/models/model"


class Ctx:
    def __init__(self, job: dict) -> None:
        self.uri = job["uri"]
        self.space = job["space"]
        self.client = MlflowClient(self.uri)
        for name in job.get("create_names") or []:
            try:
                self.client.create_registered_model(f"{self.space}-{name}")
            except MlflowException as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                    raise
        self.client.search_registered_models(max_results=1)  # warm-up

    def make_register_one(self):  # one client per thread
        client = MlflowClient(self.uri)
        space = self.space

        def register_one(name: str) -> str:
            name = f"{space}-{name}"  # MLflow has no spaces: prefix the name
            # await_creation_for=0: the version number is in the create response already;
            # the default would add a get_model_version round trip per registration.
            mv = client.create_model_version(name, source=SOURCE, await_creation_for=0)
            return str(mv.version)

        return register_one


def prepare(job: dict) -> Ctx:
    return Ctx(job)


def execute(ctx: Ctx, job: dict) -> dict:
    return execute_peer(
        ctx.make_register_one,
        job,
        "MlflowClient.create_model_version",
        lambda j: artifact(ctx, j),
    )


def artifact(ctx: Ctx, job: dict) -> dict:
    """A run with the file logged as an artifact (uploaded through the server, which proxies
    artifacts), then a model version whose source is that run's artifact."""
    client = MlflowClient(ctx.uri)
    name = f"{ctx.space}-{job['name']}"
    out: dict = {"seconds": [], "versions": [], "errors": [], "error_count": 0}
    for path in job["paths"]:
        s = time.perf_counter()
        run = client.create_run(experiment_id="0")
        client.log_artifact(run.info.run_id, path)
        source = f"{run.info.artifact_uri}/{os.path.basename(path)}"
        mv = client.create_model_version(
            name, source=source, run_id=run.info.run_id, await_creation_for=0
        )
        out["seconds"].append(time.perf_counter() - s)
        out["versions"].append(str(mv.version))
        out["source"] = source
        client.set_terminated(run.info.run_id)  # not timed
    return out


if __name__ == "__main__":
    main(prepare, execute)
