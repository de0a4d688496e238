"""The deployment scenario end to end (issue 14), as CI and a container run it: the example's
training script registers an sklearn and a torch model; `opsml lock` pins them; `opsml
download --lock` fetches the bundles (the Dockerfile's build stage); the example app serves
each with uvicorn from a directory holding only the app and the bundle, with no
OPSML_TRACKING_URI (the run stage), and `/predict` returns the trained models' own
predictions. Then the lock goes stale, and a locked card is deleted.

One stack (Postgres database, Tansu, worker, API) for the module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from client import CardRegistry, ModelCard, RunCard, load_card_dir
from registry_core.domain.errors import ArtifactIntegrityError
from tests.conftest import ADMIN_URL, Stack, _db_url, running
from workers import procs
from workers.cli import app as opsml_app
from workers.dev import start_tansu

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-service"
SCHEMA = json.loads((ROOT / "docs" / "card-bundle.schema.json").read_text())


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("service-stack")
    name = f"opsml_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    (port,) = procs.free_ports(1)
    tansu = start_tansu(port, log_path=tmp / "tansu.out")
    try:
        async with running(Stack(_db_url(name), f"127.0.0.1:{port}", tmp)) as s:
            yield s
    finally:
        procs.stop(tansu)
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def user_env(stack: Stack | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSML_")}
    env.pop("PYTHONPATH", None)
    if stack is not None:
        env["OPSML_TRACKING_URI"] = stack.url
    return env


def opsml(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the installed `opsml` script, as CI calls it
    return subprocess.run(
        [str(Path(sys.executable).with_name("opsml")), *args], cwd=cwd, env=user_env(stack),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def in_process(stack: Stack, *args: str) -> Any:
    """The same CLI in this process (the checks after the served scenario, faster)."""
    return CliRunner().invoke(opsml_app, list(args), env={"OPSML_TRACKING_URI": stack.url})


def start_service(bundle: Path, runtime: Path) -> tuple[Any, int]:
    """The run stage: a directory with app.py and the bundle only, no registry settings."""
    runtime.mkdir()
    shutil.copy(EXAMPLE / "app.py", runtime / "app.py")
    shutil.copytree(bundle, runtime / "bundle")
    env = {**user_env(None), "MODEL_BUNDLE": str(runtime / "bundle")}
    assert not any(k.startswith("OPSML_") for k in env)
    (port,) = procs.free_ports(1)
    proc = procs.spawn(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)],
        env={**env, "PYTHONPATH": str(runtime)}, log_path=runtime / "uvicorn.log",
    )  # fmt: skip
    return proc, port


def train(stack: Stack, work: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The example's training script, run in this process (torch and scikit-learn are
    imported here already) against the stack; returns its probe file."""
    import runpy

    monkeypatch.setenv("OPSML_TRACKING_URI", stack.url)
    monkeypatch.syspath_prepend(str(work / "training"))
    monkeypatch.setattr(sys, "argv", ["train.py", "--probe", str(work / "probe.json")])
    runpy.run_path(str(work / "training" / "train.py"), run_name="__main__")
    monkeypatch.delenv("OPSML_TRACKING_URI")
    sys.modules.pop("nets", None)  # the example's training module: not for other tests
    probe: dict[str, Any] = json.loads((work / "probe.json").read_text())
    return probe


def test_lock_download_and_serve_sklearn_and_torch(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonschema

    work = tmp_path / "repo"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("bundle", "opsml.lock"))
    probe = train(stack, work, monkeypatch)

    locked = opsml(stack, work, "lock", "opsml-deploy.toml", "-o", "opsml.lock")
    assert locked.returncode == 0, locked.stderr
    lock = json.loads((work / "opsml.lock").read_text())
    assert [(c["dir"], c["version"]) for c in lock["cards"]] == [
        ("churn-sklearn", "1.0.0"),
        ("churn-torch", "1.0.0"),
    ]
    assert {f["path"] for f in lock["cards"][0]["files"]} == {
        "model.skops", "model.onnx", "sample_data.npy",
    }  # fmt: skip
    assert {f["path"] for f in lock["cards"][1]["files"]} == {
        "model.safetensors", "model.pt2", "sample_data.npy",
    }  # fmt: skip
    fresh = in_process(stack, "lock", str(work / "opsml-deploy.toml"), "--check",
                       "-o", str(work / "opsml.lock"))  # fmt: skip
    assert fresh.exit_code == 0 and "up to date" in fresh.output, fresh.output

    # the Dockerfile's build stage
    got = opsml(stack, work, "download", "--lock", "opsml.lock", "--to", "bundle")
    assert got.returncode == 0, got.stderr
    assert got.stdout.count("sha256 verified against opsml.lock") == 2
    for entry in lock["cards"]:
        doc = json.loads((work / "bundle" / entry["dir"] / "card.json").read_text())
        jsonschema.validate(doc, SCHEMA)
        assert doc["uid"] == entry["uid"] and doc["files"] == entry["files"]
    # the ONNX export registered with the sklearn model predicts the same
    session = load_card_dir(work / "bundle" / "churn-sklearn", model="onnx").model
    rows = np.asarray(probe["churn-sklearn"]["instances"], dtype=np.float32)
    labels = session.run(None, {session.get_inputs()[0].name: rows})[0]
    assert labels.tolist() == probe["churn-sklearn"]["predictions"]

    # the run stage, both services starting side by side
    names = ("churn-sklearn", "churn-torch")
    services = {n: start_service(work / "bundle" / n, tmp_path / f"run-{n}") for n in names}
    try:
        for name, (proc, port) in services.items():
            procs.wait_port("127.0.0.1", port, 90, proc)
            url = f"http://127.0.0.1:{port}/predict"
            resp = httpx.post(url, json={"instances": probe[name]["instances"]}, timeout=30)
            assert resp.status_code == 200, resp.text
            served = resp.json()
            uid = next(c["uid"] for c in lock["cards"] if c["dir"] == name)
            assert served["model"] == {"name": name, "version": "1.0.0", "uid": uid}
            np.testing.assert_allclose(
                served["predictions"], probe[name]["predictions"], rtol=1e-5, atol=1e-6
            )
            bad = httpx.post(url, json={"instances": [[1.0]]}, timeout=30)
            assert bad.status_code == 422 and "4 features" in bad.text
    finally:
        for proc, _ in services.values():
            procs.stop(proc)

    # a newer match makes the lock stale for CI; download --lock still fetches the locked one
    with CardRegistry("model", tracking_uri=stack.url) as reg:
        newer = ModelCard(space="demo", name="churn-sklearn", model=load_card_dir(
            work / "bundle" / "churn-sklearn").model)  # fmt: skip
        reg.register_card(newer)
        assert newer.version == "1.1.0"
        stale = in_process(stack, "lock", str(work / "opsml-deploy.toml"), "--check",
                           "-o", str(work / "opsml.lock"))  # fmt: skip
        assert stale.exit_code == 1, stale.output
        assert (
            "churn-sklearn: locked 1.0.0, the match of model/demo/churn-sklearn ^1 is now"
            " 1.1.0" in stale.output
        )

        # a corrupted bundle file is refused on load
        model_file = work / "bundle" / "churn-sklearn" / "model.skops"
        raw = bytearray(model_file.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        model_file.write_bytes(bytes(raw))
        with pytest.raises(ArtifactIntegrityError, match=r"model\.skops: sha256"):
            load_card_dir(work / "bundle" / "churn-sklearn")
        again = in_process(stack, "download", "--lock", str(work / "opsml.lock"),
                           "--to", str(work / "bundle"))  # fmt: skip
        assert again.exit_code == 0, again.output
        assert load_card_dir(work / "bundle" / "churn-sklearn").version == "1.0.0"

        # a locked card deleted: a clear error for download --lock and for --check
        reg.delete_card(reg.load_card(uid=lock["cards"][0]["uid"]))
        gone = in_process(stack, "download", "--lock", str(work / "opsml.lock"),
                          "--to", str(tmp_path / "other"))  # fmt: skip
        assert gone.exit_code == 2
        assert "churn-sklearn: locked model/demo/churn-sklearn 1.0.0" in gone.output
        assert "was deleted" in gone.output
        checked = in_process(stack, "lock", str(work / "opsml-deploy.toml"), "--check",
                             "-o", str(work / "opsml.lock"))  # fmt: skip
        assert checked.exit_code == 2 and "was deleted" in checked.output

    # re-locking picks the newest live match
    relocked = in_process(stack, "lock", str(work / "opsml-deploy.toml"),
                          "-o", str(work / "opsml.lock"))  # fmt: skip
    assert relocked.exit_code == 0, relocked.output
    assert "churn-sklearn: model/demo/churn-sklearn 1.1.0" in relocked.output


def test_plain_download_writes_card_json(stack: Stack, tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    with CardRegistry("model", tracking_uri=stack.url) as reg:
        card = reg.register_card(
            ModelCard(space="plain", name="lin", model=LinearRegression().fit(X, X[:, 0]),
                      sample_data=X[:3], tags={"k": "v"}, metadata={"note": "x"})
        )  # fmt: skip
    out = in_process(stack, "download", "--registry", "model", "--space", "plain",
                     "--name", "lin", "--to", str(tmp_path / "b"))  # fmt: skip
    assert out.exit_code == 0 and "card.json" in out.output, out.output
    import jsonschema

    doc = json.loads((tmp_path / "b" / "card.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["uid"] == str(card.uid) and doc["tags"] == {"k": "v"}
    assert doc["interface"]["sample_data"] == {"path": "sample_data.npy", "type": "numpy"}
    loaded = load_card_dir(tmp_path / "b")
    assert np.array_equal(loaded.model.predict(X), card.model.predict(X))

    # card.download_artifacts() makes the same bundle (sync here; async in download --lock)
    with CardRegistry("model", tracking_uri=stack.url) as reg:
        paths = reg.load_card(uid=card.uid).download_artifacts(tmp_path / "c")
    assert sorted(p.name for p in paths) == ["model.skops", "sample_data.npy"]
    assert json.loads((tmp_path / "c" / "card.json").read_text()) == doc


def test_an_alias_in_the_spec_locks_where_it_points(stack: Stack, tmp_path: Path) -> None:
    spec, lock = tmp_path / "opsml-deploy.toml", tmp_path / "opsml.lock"
    spec.write_text('[[cards]]\nregistry = "run"\nspace = "al"\nname = "r"\nalias = "prod"\n')
    check = ("lock", str(spec), "--check", "-o", str(lock))
    with CardRegistry("run", tracking_uri=stack.url) as reg:
        first = reg.register_card(RunCard(space="al", name="r"))
        reg.set_alias("prod", first)
        out = in_process(stack, "lock", str(spec), "-o", str(lock))
        assert out.exit_code == 0, out.output
        assert json.loads(lock.read_text())["cards"][0]["uid"] == str(first.uid)
        reg.register_card(RunCard(space="al", name="r"))  # newer, but the alias stays
        assert in_process(stack, *check).exit_code == 0
        second = reg.list_cards(space="al", name="r")[0]
        reg.set_alias("prod", second)
        stale = in_process(stack, *check)
        assert stale.exit_code == 1
        assert "r: locked 1.0.0, the match of run/al/r alias 'prod' is now 1.1.0" in stale.output
    spec.write_text(spec.read_text().replace('"prod"', '"canary"'))
    missing = in_process(stack, "lock", str(spec), "-o", str(lock))
    assert missing.exit_code == 2 and "nothing matches run/al/r alias 'canary'" in missing.output
