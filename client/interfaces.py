"""Data and model interfaces: objects <-> files, with no pickle for anything but what a
framework itself requires (scikit-learn goes through skops; torch through safetensors).

Each `save_*` writes into a directory and returns the card attributes it learnt (row count,
feature map, framework versions, ...); each `load_*` rebuilds the object from those files.
The heavy libraries are imported only when used (extras `data` and `model`).
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any

from registry_core.domain.errors import InvalidArtifact

# ---- data -------------------------------------------------------------------------------------


def _kind(obj: Any) -> str:
    mod = type(obj).__module__.split(".")[0]
    name = type(obj).__name__
    if mod == "pandas" and name == "DataFrame":
        return "pandas"
    if mod == "polars" and name == "DataFrame":
        return "polars"
    if mod == "pyarrow" and name == "Table":
        return "arrow"
    if mod == "numpy" and name == "ndarray":
        return "numpy"
    raise InvalidArtifact(
        f"cannot store a {type(obj).__module__}.{name} as data: use a pandas, polars or pyarrow"
        " table, or a numpy array (or attach files with add_artifact)"
    )


def save_table(obj: Any, directory: Path, stem: str) -> tuple[str, dict[str, Any]]:
    """Write `obj` as `<stem>.parquet` (tables) or `<stem>.npy` (arrays)."""
    kind = _kind(obj)
    if kind == "numpy":
        import numpy as np

        if obj.dtype.hasobject:
            raise InvalidArtifact("numpy arrays of Python objects are not stored (no pickle)")
        name = f"{stem}.npy"
        np.save(directory / name, obj, allow_pickle=False)
        rows = int(obj.shape[0]) if obj.ndim else 1
        features = {"dtype": str(obj.dtype), "shape": str(obj.shape)}
        return name, {"data_type": kind, "row_count": rows, "feature_map": features}
    name = f"{stem}.parquet"
    if kind == "polars":
        obj.write_parquet(directory / name)
        features = {c: str(t) for c, t in obj.schema.items()}
        rows = obj.height
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(obj) if kind == "pandas" else obj
        pq.write_table(table, directory / name)
        features = {f.name: str(f.type) for f in table.schema}
        rows = table.num_rows
    return name, {"data_type": kind, "row_count": rows, "feature_map": features}


def load_table(path: Path, kind: str | None) -> Any:
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if kind == "polars":
        import polars as pl

        return pl.read_parquet(path)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if kind == "pandas":
        return table.to_pandas()
    return table


# ---- models -----------------------------------------------------------------------------------

SAFE_SKOPS_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def _framework(model: Any) -> str:
    mod = type(model).__module__.split(".")[0]
    if mod == "sklearn":
        return "sklearn"
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    except ImportError:
        pass
    raise InvalidArtifact(
        f"cannot store a {type(model).__module__}.{type(model).__name__} as a model: supported"
        " are scikit-learn estimators and torch.nn.Module (or attach files with add_artifact)"
    )


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def save_model(model: Any, directory: Path) -> tuple[list[str], dict[str, Any]]:
    framework = _framework(model)
    versions = {"python": platform.python_version()}
    if framework == "sklearn":
        import sklearn
        import skops.io as sio

        sio.dump(model, directory / "model.skops")
        versions |= {"scikit-learn": sklearn.__version__, "skops": _version("skops")}
        versions |= {"numpy": _version("numpy")}
        return ["model.skops"], {
            "framework": "sklearn",
            "model_format": "skops",
            "framework_versions": versions,
        }
    import safetensors
    import safetensors.torch
    import torch

    cls = type(model)
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        raise InvalidArtifact(
            f"torch model class {cls.__qualname__} must be importable (defined at module level of"
            " an importable module) so the model can be rebuilt from its state_dict"
        )
    safetensors.torch.save_model(model, str(directory / "model.safetensors"))
    versions |= {"torch": torch.__version__, "safetensors": safetensors.__version__}
    return ["model.safetensors"], {
        "framework": "torch",
        "model_format": "safetensors",
        "model_class": f"{cls.__module__}:{cls.__qualname__}",
        "framework_versions": versions,
    }


def load_model(directory: Path, attrs: dict[str, Any]) -> Any:
    fmt = attrs.get("model_format")
    if fmt == "skops":
        import skops.io as sio

        path = directory / "model.skops"
        untrusted = sio.get_untrusted_types(file=path)
        unsafe = [t for t in untrusted if not t.startswith(SAFE_SKOPS_MODULES)]
        if unsafe:
            raise InvalidArtifact(
                f"the stored model uses types outside scikit-learn/numpy/scipy: {unsafe}; load"
                " it yourself with skops.io.load(..., trusted=[...]) after reviewing them"
            )
        return sio.load(path, trusted=untrusted)
    if fmt == "safetensors":
        import safetensors.torch

        module_name, _, qualname = str(attrs.get("model_class") or "").partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        model = obj(**(attrs.get("model_init_kwargs") or {}))
        safetensors.torch.load_model(model, str(directory / "model.safetensors"))
        model.eval()
        return model
    raise InvalidArtifact(f"unknown model format {fmt!r}")
