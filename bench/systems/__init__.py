"""System adapters: ours (opsml dev), MLflow 3.x (uvicorn 1 worker, gunicorn 2 workers),
OpsML 2.2.4."""

from __future__ import annotations

from bench.systems.base import System
from bench.systems.mlflow import MlflowGunicorn, MlflowUvicorn
from bench.systems.opsml import Opsml224
from bench.systems.ours import Ours, OursDev, OursServer

SYSTEMS: dict[str, type[System]] = {
    "ours": Ours,
    "ours-dev": OursDev,
    "ours-server": OursServer,
    "mlflow": MlflowUvicorn,
    "mlflow-gunicorn": MlflowGunicorn,
    "opsml": Opsml224,
}

__all__ = ["SYSTEMS", "System"]
