"""W6: register a card carrying a 50 MB artifact, through each system's client over HTTP (the
bytes go through the server for every system: ours streams them through the API into storage,
MLflow's server proxies artifacts (--artifacts-destination), OpsML's API takes the upload).

The harness writes `w6_reps` files of random bytes (distinct content, so no system can skip an
upload as already stored) and every system registers the same files, one at a time; the time of
each registration runs from before the first client call to the version being known.

* ours: `ModelCard(space, name)` + `add_artifact(path)` + `AsyncCardRegistry.register_card`;
* MLflow: `create_run` + `log_artifact` + `create_model_version(source=<run artifact uri>)`;
* OpsML 2.2.4: `RunCard` + `log_artifact_from_file` + `CardRegistry("run").register_card`
  (its ModelCard needs a framework model interface, e.g. scikit-learn, which is not installed
  in its venv; `log_artifact_from_file` uploads the file through the same HTTP storage API).
"""

from __future__ import annotations

import os
import shutil
import statistics

from bench.config import WORK
from bench.systems.base import System
from bench.workloads.base import RunContext, measured, setup_names

TITLE = "W6 register a card with a 50 MB artifact"
NAME = "w6-model"
PATHS = {
    "ours": "ModelCard + add_artifact + AsyncCardRegistry.register_card",
    "ours-dev": "ModelCard + add_artifact + AsyncCardRegistry.register_card",
    "mlflow": "create_run + log_artifact (server-proxied) + create_model_version",
    "mlflow-gunicorn": "create_run + log_artifact (server-proxied) + create_model_version",
    "opsml": "RunCard + log_artifact_from_file + CardRegistry.register_card (no ModelCard)",
}


def files(ctx: RunContext) -> list[str]:
    """The artifact files of this run, created once and shared by every system."""
    d = WORK / "w6" / ctx.run_id
    out = []
    for i in range(ctx.scale.w6_reps):
        p = d / f"weights-{i}.bin"
        if not p.exists():
            d.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as f:
                for _ in range(ctx.scale.w6_mb):
                    f.write(os.urandom(1_000_000))
        out.append(str(p))
    return out


def cleanup(ctx: RunContext) -> None:
    shutil.rmtree(WORK / "w6" / ctx.run_id, ignore_errors=True)


def run(system: System, ctx: RunContext) -> dict:
    paths = files(ctx)
    setup_names(system, [NAME])
    job = {"op": "artifact", "names": [NAME], "name": NAME, "paths": paths}
    (res,), cpu = measured(system, ctx, "W6", [job])
    secs = res["seconds"]
    if res.get("error_count") or not secs:
        raise RuntimeError(f"W6 failed: {res.get('errors')}")
    mb = float(ctx.scale.w6_mb)  # files of w6_mb * 10^6 bytes
    med = statistics.median(secs)
    return {
        "mb": round(mb, 1),
        "reps": len(secs),
        "seconds": [round(s, 3) for s in secs],
        "median_s": round(med, 3),
        "mb_per_s": round(mb / med, 1),
        "versions": res.get("versions"),
        "path": PATHS.get(system.key, ""),
        **cpu,
    }
