"""A model service: loads its bundle at start (no registry, no credentials) and serves
`POST /predict`.

    MODEL_BUNDLE=bundle/churn-sklearn uvicorn app:app --port 8080

The bundle is a directory `opsml download --lock opsml.lock --to bundle` wrote: the model's
files and their card.json. `load_card_dir` checks every file's sha256 before loading; a torch
model comes from its class-free torch.export program, so this image needs no training code.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from client import load_card_dir

BUNDLE = os.environ.get("MODEL_BUNDLE", "bundle/churn-sklearn")


class PredictRequest(BaseModel):
    instances: list[list[float]] = Field(min_length=1, max_length=10_000)


class PredictResponse(BaseModel):
    predictions: list[float]
    model: dict[str, Any]


def predictor(card: Any) -> Any:
    """rows (n x features, float32) -> one prediction per row."""
    if card.framework == "torch":
        import torch

        def run_torch(rows: np.ndarray) -> list[float]:
            with torch.no_grad():
                return card.model(torch.from_numpy(rows)).reshape(len(rows), -1)[:, 0].tolist()

        return run_torch
    return lambda rows: card.model.predict(rows).tolist()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    card = load_card_dir(BUNDLE)  # refuses a bundle whose files do not match card.json
    width = card.sample_data.shape[1] if card.sample_data is not None else None
    app.state.card, app.state.predict, app.state.width = card, predictor(card), width
    yield


app = FastAPI(title="churn model service", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/model")
def model_info() -> dict[str, Any]:
    card = app.state.card
    return {"name": card.name, "version": card.version, "uid": str(card.uid),
            "framework": card.framework, "feature_map": card.feature_map}  # fmt: skip


@app.post("/predict", response_model=PredictResponse)
def predict(req: PredictRequest) -> PredictResponse:
    rows = np.asarray(req.instances, dtype=np.float32)
    width = app.state.width
    if rows.ndim != 2 or (width is not None and rows.shape[1] != width):
        raise HTTPException(422, f"each instance needs {width} features")
    card = app.state.card
    return PredictResponse(
        predictions=app.state.predict(rows),
        model={"name": card.name, "version": card.version, "uid": str(card.uid)},
    )
