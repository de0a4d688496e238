"""Loading a card from a bundle directory with no registry: `load_card_dir(path)`.

What a serving container calls at start. It reads `card.json`, checks every file's size and
sha256 (a changed or missing file is refused before anything is deserialised), rebuilds the
card and its objects, and never opens a connection: no OPSML_TRACKING_URI is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from client import bundle, interfaces
from client.cards import CARD_CLASSES, Card
from registry_core.domain.errors import InvalidArtifact

ModelChoice = Literal["auto", "native", "torch.export", "onnx", "none"]
MODEL_CHOICES = ("auto", "native", "torch.export", "onnx", "none")


class MissingExtra(InvalidArtifact):
    """An optional dependency needed to load this bundle is not installed."""


def _needs(extra: str, what: str, exc: ImportError) -> MissingExtra:
    return MissingExtra(
        f"loading {what} needs the `{extra}` extra ({exc.name or exc} is not installed):"
        f" pip install 'opsml-registry[{extra}]'"
    )


def _table(path: Path, kind: str | None) -> Any:
    try:
        return interfaces.load_table(path, kind)
    except ImportError as exc:
        raise _needs("data", f"{path.name} ({kind or 'table'})", exc) from exc


def _importable(model_class: str | None) -> bool:
    import importlib.util

    module = (model_class or "").partition(":")[0]
    try:
        return bool(module) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _native(directory: Path, attrs: dict[str, Any]) -> Any:
    fmt = attrs.get("model_format")
    extra_for = {"skops": "scikit-learn", "safetensors": "torch"}
    try:
        return interfaces.load_model(directory, attrs)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if fmt == "safetensors" and missing and missing not in ("torch", "safetensors"):
            raise InvalidArtifact(
                f"the model's class {attrs.get('model_class')} cannot be imported ({exc}):"
                " install the training code, or load the class-free export with"
                " model='torch.export'"
            ) from exc
        raise _needs("model", f"a {extra_for.get(str(fmt), str(fmt))} model", exc) from exc


def _torch_export(directory: Path, exports: dict[str, str]) -> Any:
    name = exports.get("torch.export")
    if not name:
        raise InvalidArtifact(
            "this bundle has no torch.export program (register the torch model with"
            " sample_data to get one); load the state dict with model='native'"
        )
    try:
        import torch
    except ImportError as exc:
        raise _needs("model", "a torch.export program", exc) from exc
    return torch.export.load(str(directory / name)).module()


def _onnx(directory: Path, exports: dict[str, str]) -> Any:
    name = exports.get("onnx")
    if not name:
        raise InvalidArtifact(
            "this bundle has no ONNX export: register the model with export_onnx=True"
        )
    try:
        import onnxruntime
    except ImportError as exc:
        raise _needs("onnx", "an ONNX model", exc) from exc
    return onnxruntime.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])


def _model(directory: Path, attrs: dict[str, Any], choice: str) -> Any:
    exports = dict(attrs.get("exports") or {})
    if choice == "none" or not attrs.get("model_format"):
        return None
    if choice == "native":
        return _native(directory, attrs)
    if choice == "torch.export":
        return _torch_export(directory, exports)
    if choice == "onnx":
        return _onnx(directory, exports)
    # auto: the framework's own object; a torch model whose class is not importable here
    # (a serving image without the training code) comes from its class-free export
    if attrs.get("model_format") == "safetensors" and not _importable(attrs.get("model_class")):
        if "torch.export" in exports:
            return _torch_export(directory, exports)
        raise InvalidArtifact(
            f"the model's class {attrs.get('model_class')} is not importable here and the bundle"
            " has no torch.export program: install the training code, or register the model"
            " with sample_data so a class-free export is stored"
        )
    return _native(directory, attrs)


def load_card_dir(path: str | os.PathLike[str], *, model: ModelChoice = "auto") -> Card:
    """The card stored in bundle directory `path` (written by `opsml download` or
    `card.download_artifacts`), its `data` / `model` / `sample_data` rebuilt. Every file is
    checked against card.json's sha256 and size first (ArtifactIntegrityError otherwise). No
    network.

    `model`: "auto" (default: the framework's object - a scikit-learn estimator, or a torch
    module from its state dict and recorded class; the torch.export program when that class
    is not importable), "native", "torch.export" (class-free), "onnx" (an
    onnxruntime.InferenceSession), or "none" (metadata and data only)."""
    if model not in MODEL_CHOICES:
        raise ValueError(f"model={model!r}: choose one of {', '.join(MODEL_CHOICES)}")
    directory = Path(path)
    doc = bundle.read_card_json(directory)
    bundle.verify(directory, doc)
    cls = CARD_CLASSES.get(doc["card_type"])
    if cls is None:
        raise bundle.NotABundle(f"{directory}: unknown card_type {doc['card_type']!r}")
    card = cls(
        space=doc["space"],
        name=doc["name"],
        version=doc["version"],
        uid=doc["uid"],
        tags=doc.get("tags") or {},
        description=doc.get("description"),
        metadata=doc.get("metadata") or {},
        created_at=doc.get("created_at"),
        artifacts=doc["files"],
        **doc["attributes"],
    )
    names = {f["path"] for f in doc["files"]}
    attrs = doc["attributes"]
    if card.card_type == "DataCard":
        for name in ("data.parquet", "data.npy"):
            if name in names:
                card.data = _table(directory / name, attrs.get("data_type"))
    if card.card_type == "ModelCard":
        card.model = _model(directory, attrs, model)
        for name in ("sample_data.parquet", "sample_data.npy"):
            if name in names:
                card.sample_data = _table(directory / name, attrs.get("sample_data_type"))
    return card
