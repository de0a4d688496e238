"""Model exports made at registration: a class-free torch.export program and ONNX.

A state dict needs the model's class (the training code) to be rebuilt; a serving container
should not. So a torch model registered with `sample_data` is also stored as a `torch.export`
program (`model.pt2`, loaded with `torch.export.load(...).module()`), and `export_onnx=True`
stores `model.onnx` (skl2onnx for scikit-learn, `torch.onnx` for torch; the `onnx` extra).
The sample data gives the input's dtype and width; its first dimension (the batch) is dynamic.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

from registry_core.domain.errors import InvalidArtifact

TORCH_EXPORT_FILE = "model.pt2"
ONNX_FILE = "model.onnx"


def missing_extra(what: str, extra: str, exc: ImportError) -> InvalidArtifact:
    return InvalidArtifact(
        f"{what} needs the `{extra}` extra ({exc.name or exc} is not installed):"
        f" pip install 'opsml-registry[{extra}]'"
    )


def as_array(sample: Any) -> Any:
    """The sample data as one 2-D (or n-D) numpy array: the model's single input."""
    import numpy as np

    mod = type(sample).__module__.split(".")[0]
    if mod == "numpy":
        array = sample
    elif mod in ("pandas", "polars"):
        array = sample.to_numpy()
    elif mod == "pyarrow":
        array = np.column_stack([c.to_numpy() for c in sample.columns])
    else:
        raise InvalidArtifact(f"cannot use a {type(sample).__name__} as the model's input")
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise InvalidArtifact(
            "exports need numeric sample_data (one tensor input); this sample has dtype"
            f" {array.dtype}: pass sample_data as a numeric array, or set export_onnx=False /"
            " export_torch=False"
        )
    return array


def _torch_input(model: Any, sample: Any) -> Any:
    import torch

    array = as_array(sample)
    tensor = torch.from_numpy(array.copy())
    if tensor.is_floating_point():
        param = next(iter(model.parameters()), None)
        tensor = tensor.to(param.dtype if param is not None else torch.float32)
    return tensor


def _batch_dim() -> Any:
    from torch.export import Dim

    return ({0: Dim.DYNAMIC},)


@contextlib.contextmanager
def _in_eval_mode(model: Any) -> Any:
    """Export the inference graph (dropout off, batch-norm statistics frozen), then give the
    user's model back in the mode it was in."""
    training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(training)


def export_torch(model: Any, sample: Any, directory: Path) -> str:
    """Store `model` as a torch.export program; returns its file name."""
    import torch

    x = _torch_input(model, sample)
    try:
        with _in_eval_mode(model):
            program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim())
    except Exception as exc:
        raise InvalidArtifact(
            f"torch.export could not export {type(model).__qualname__} with the sample data"
            f" ({type(exc).__name__}: {str(exc)[:300]}); fix the model or the sample, or"
            " register with export_torch=False (the state dict alone then needs the class)"
        ) from exc
    torch.export.save(program, str(directory / TORCH_EXPORT_FILE))
    return TORCH_EXPORT_FILE


def export_onnx(model: Any, framework: str, sample: Any, directory: Path) -> str:
    """Store `model` as ONNX (sklearn through skl2onnx, torch through torch.onnx)."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise missing_extra("export_onnx=True", "onnx", exc) from exc
    if framework == "sklearn":
        _sklearn_onnx(model, sample, directory / ONNX_FILE)
    else:
        _torch_onnx(model, sample, directory / ONNX_FILE)
    return ONNX_FILE


def _sklearn_onnx(model: Any, sample: Any, target: Path) -> None:
    import numpy as np

    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        raise missing_extra("ONNX export of scikit-learn models", "onnx", exc) from exc
    if sample is not None:
        array = as_array(sample)
        x: Any = array[:1].astype(np.float32) if array.dtype.kind == "f" else array[:1]
    elif getattr(model, "n_features_in_", None):
        x = None
    else:
        raise InvalidArtifact("export_onnx=True needs sample_data (the model's input)")
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    # plain arrays out, not a list of dicts per row (skl2onnx's default for classifiers)
    options = {type(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    try:
        if x is None:
            types = [("X", FloatTensorType([None, int(model.n_features_in_)]))]
            onx = to_onnx(model, initial_types=types, options=options)
        else:
            onx = to_onnx(model, x, options=options)
    except Exception as exc:
        raise InvalidArtifact(
            f"skl2onnx could not convert {type(model).__qualname__}"
            f" ({type(exc).__name__}: {str(exc)[:300]}); register with export_onnx=False"
        ) from exc
    target.write_bytes(onx.SerializeToString())


def _torch_onnx(model: Any, sample: Any, target: Path) -> None:
    import torch

    if sample is None:
        raise InvalidArtifact("export_onnx=True for a torch model needs sample_data (its input)")
    try:
        import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
    except ImportError as exc:
        raise missing_extra("ONNX export of torch models", "onnx", exc) from exc
    x = _torch_input(model, sample)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _in_eval_mode(model):
            torch.onnx.export(model, (x,), str(target), dynamic_shapes=_batch_dim(), verbose=False)
    except Exception as exc:
        raise InvalidArtifact(
            f"torch.onnx could not export {type(model).__qualname__}"
            f" ({type(exc).__name__}: {str(exc)[:300]}); register with export_onnx=False"
        ) from exc
    finally:
        quiet.setLevel(level)


def check_init_kwargs(model: Any, kwargs: dict[str, Any]) -> None:
    """A torch model is rebuilt as `Class(**model_init_kwargs)`: refuse at registration what
    could not be rebuilt later (a required constructor argument missing)."""
    import inspect

    try:
        params = inspect.signature(type(model).__init__).parameters
    except (TypeError, ValueError):
        return
    required = [
        n
        for n, p in list(params.items())[1:]
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [n for n in required if n not in kwargs]
    if missing:
        raise InvalidArtifact(
            f"{type(model).__qualname__}.__init__ requires {', '.join(missing)}: pass them as"
            f" model_init_kwargs={{{', '.join(repr(n) + ': ...' for n in missing)}}} so the"
            " model can be rebuilt from its state dict"
        )


def make_exports(
    card: Any, learnt: dict[str, Any], directory: Path
) -> tuple[list[str], dict[str, Any]]:
    """The exports `card` asks for (a ModelCard whose model was saved into `directory`, with
    the attributes `learnt` then): the files written and the attributes to record."""
    framework = learnt["framework"]
    sample = card.sample_data
    versions = dict(learnt.get("framework_versions") or {})
    exports: dict[str, str] = {}
    if framework == "torch" and card.export_torch and sample is not None:
        exports["torch.export"] = export_torch(card.model, sample, directory)
    if card.export_onnx:
        exports["onnx"] = export_onnx(card.model, framework, sample, directory)
        import onnx

        versions["onnx"] = onnx.__version__
        if framework == "sklearn":
            import skl2onnx

            versions["skl2onnx"] = skl2onnx.__version__
    return list(exports.values()), {"exports": exports, "framework_versions": versions}
