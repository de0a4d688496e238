"""Bundles without a registry: card.json as documented (validated against the JSON Schema in
docs), offline load of every data and model interface, the class-free torch export in a
process that cannot import the training code, ONNX predictions, corrupted files refused and
missing extras named. Cards are serialised by the client's own code (`transfer.prepared`) and
stamped with a uid and version, as the registry would."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from client import DataCard, ModelCard, RunCard, bundle, load_card_dir, transfer
from client.offline import MissingExtra
from registry_core.domain.errors import ArtifactIntegrityError, InvalidArtifact

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "card-bundle.schema.json").read_text())


def make_bundle(card: Any, dest: Path) -> Path:
    """What registration then `card.download_artifacts(dest)` leave on disk."""
    dest.mkdir(parents=True, exist_ok=True)
    with transfer.prepared(card) as (files, learnt):
        for key, value in learnt.items():
            setattr(card, key, value)
        for ref, path in files:
            (dest / ref.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / ref.path)
        card.artifacts = [ref for ref, _ in files]
    card.version, card.uid = "1.2.0", uuid4()
    bundle.write_card_json(card, dest)
    return dest


def validate(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def sk() -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = rng.random((120, 4))
    y = (X[:, 0] + X[:, 2] > 1).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


def test_sklearn_bundle_card_json_schema_and_offline_load(
    sk: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    model, X = sk
    card = ModelCard(
        space="demo", name="churn", model=model, sample_data=X[:5], tags={"team": "growth"},
        metadata={"auc": 0.91}, export_onnx=True,
    )  # fmt: skip
    d = make_bundle(card, tmp_path / "b")
    doc = json.loads((d / "card.json").read_text())
    validate(doc)
    assert doc["registry"] == "model" and doc["uid"] == str(card.uid)
    assert doc["version"] == "1.2.0" and doc["tags"] == {"team": "growth"}
    assert doc["metadata"] == {"auc": 0.91}
    iface = doc["interface"]
    assert iface["format"] == "skops" and iface["model_file"] == "model.skops"
    assert {"python", "scikit-learn", "skops", "numpy", "onnx", "skl2onnx"} <= set(
        iface["framework_versions"]
    )
    assert iface["sample_data"] == {"path": "sample_data.npy", "type": "numpy"}
    assert iface["feature_map"] == {"dtype": "float64", "shape": "(5, 4)"}
    assert iface["exports"] == {"onnx": "model.onnx"}
    listed = {f["path"]: f for f in doc["files"]}
    assert set(listed) == {"model.skops", "model.onnx", "sample_data.npy"}
    for name, f in listed.items():
        assert f["size"] == (d / name).stat().st_size
        assert f["sha256"] == transfer.sha256_of(d / name)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"load_card_dir opened a connection: {args}")

    with pytest.MonkeyPatch.context() as mp:  # offline: any connection attempt fails the test
        mp.setenv("OPSML_TRACKING_URI", "http://registry.invalid")
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket.socket, "connect_ex", no_network)
        mp.setattr(socket, "create_connection", no_network)
        loaded = load_card_dir(d)
    assert isinstance(loaded, ModelCard) and loaded.uid == card.uid
    assert np.array_equal(loaded.model.predict(X), model.predict(X))
    assert np.array_equal(loaded.sample_data, X[:5])

    session = load_card_dir(d, model="onnx").model
    label, proba = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    assert np.array_equal(label, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-5)


TRAINING_CODE = """
import torch


class Scorer(torch.nn.Module):
    def __init__(self, n_in, hidden=16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2)
        )

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)
"""


def test_torch_bundle_state_dict_class_free_export_and_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    code = tmp_path / "training"
    code.mkdir()
    (code / "scorer_mod.py").write_text(textwrap.dedent(TRAINING_CODE))
    monkeypatch.syspath_prepend(str(code))
    from scorer_mod import Scorer  # type: ignore[import-not-found]

    torch.manual_seed(0)
    net = Scorer(3, hidden=16)  # in training mode: registration must leave it so
    with pytest.raises(InvalidArtifact, match="requires n_in"):
        make_bundle(ModelCard(space="demo", name="scorer", model=net), tmp_path / "x")

    X = np.random.default_rng(2).random((8, 3)).astype(np.float32)
    card = ModelCard(
        space="demo", name="scorer", model=net, sample_data=X[:4],
        model_init_kwargs={"n_in": 3, "hidden": 16}, export_onnx=True,
    )  # fmt: skip
    d = make_bundle(card, tmp_path / "b")
    assert net.training
    net.eval()
    doc = json.loads((d / "card.json").read_text())
    validate(doc)
    iface = doc["interface"]
    assert iface["model_class"] == "scorer_mod:Scorer"
    assert iface["model_init_kwargs"] == {"n_in": 3, "hidden": 16}
    assert iface["exports"] == {"torch.export": "model.pt2", "onnx": "model.onnx"}
    assert {"torch", "safetensors", "onnx"} <= set(iface["framework_versions"])
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()

    native = load_card_dir(d).model  # the class is importable here: the state dict
    assert type(native).__name__ == "Scorer"
    with torch.no_grad():
        np.testing.assert_array_equal(native(torch.from_numpy(X)).numpy(), expected)
    session = load_card_dir(d, model="onnx").model
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    # without the training code (the serving image): the class-free program, by default
    monkeypatch.delitem(sys.modules, "scorer_mod")
    sys.path.remove(str(code))
    served = load_card_dir(d).model
    assert type(served).__name__ != "Scorer"
    with torch.no_grad():
        np.testing.assert_allclose(served(torch.from_numpy(X)).numpy(), expected, rtol=1e-6)
    with pytest.raises(
        InvalidArtifact, match=r"scorer_mod:Scorer cannot be imported.*torch\.export"
    ):
        load_card_dir(d, model="native")


@pytest.mark.parametrize("kind", ["numpy", "pandas", "polars", "arrow"])
def test_data_bundles(kind: str, tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.5, 2.5, 3.5], "city": ["a", "b", "c"]})
    data: Any = {
        "numpy": np.arange(12, dtype=np.int64).reshape(4, 3),
        "pandas": df,
        "polars": pl.from_pandas(df),
        "arrow": pa.Table.from_pandas(df, preserve_index=False),
    }[kind]
    d = make_bundle(DataCard(space="demo", name="train", data=data), tmp_path / "b")
    doc = json.loads((d / "card.json").read_text())
    validate(doc)
    assert doc["interface"]["data_type"] == kind
    got = load_card_dir(d)
    assert isinstance(got, DataCard) and got.data_type == kind
    if kind == "numpy":
        assert np.array_equal(got.data, data)
    elif kind == "pandas":
        pd.testing.assert_frame_equal(got.data, data)
    else:
        assert got.data.equals(data)


def test_corrupt_missing_and_foreign_bundles_are_refused(
    sk: tuple[Any, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X = sk
    d = make_bundle(ModelCard(space="demo", name="churn", model=model), tmp_path / "b")
    raw = bytearray((d / "model.skops").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one bit pattern changed
    (d / "model.skops").write_bytes(bytes(raw))
    with pytest.raises(ArtifactIntegrityError, match=r"model\.skops: sha256 [0-9a-f]{64}"):
        load_card_dir(d)
    (d / "model.skops").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"model\.skops: missing"):
        load_card_dir(d)
    with pytest.raises(bundle.NotABundle, match=r"no card\.json"):
        load_card_dir(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "card.json").write_text('{"bundle_format": 99}')
    with pytest.raises(bundle.NotABundle, match="bundle_format 99"):
        load_card_dir(tmp_path / "c")
    (tmp_path / "c" / "card.json").write_text(
        json.dumps(
            {"bundle_format": 1, "card_type": "RunCard", "attributes": {},
             "files": [{"path": "../../etc/passwd", "sha256": "0" * 64, "size": 1}]}
        )
    )  # fmt: skip
    with pytest.raises(bundle.NotABundle, match="malformed files entry"):
        load_card_dir(tmp_path / "c")

    # a missing optional dependency names the extra to install
    ok = make_bundle(
        ModelCard(space="demo", name="churn", model=model, sample_data=X[:2], export_onnx=True),
        tmp_path / "ok",
    )
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(InvalidArtifact, match=r"export_onnx=True needs the `onnx` extra"):
        make_bundle(ModelCard(space="demo", name="churn", model=model, export_onnx=True), tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtra, match=r"opsml-registry\[onnx\]"):
        load_card_dir(ok, model="onnx")
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(MissingExtra, match=r"opsml-registry\[model\]"):
        load_card_dir(ok)


def test_files_card(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    run = RunCard(space="demo", name="r")
    run.add_artifact(notes)
    d = make_bundle(run, tmp_path / "b")
    validate(json.loads((d / "card.json").read_text()))
    got = load_card_dir(d)
    assert isinstance(got, RunCard) and got.artifacts[0].path == "notes.txt"
