"""Artifacts end to end, on local storage and on S3 (SeaweedFS): staged upload through the API,
verify-and-finalize by the sequencer, verified download, and the data/model interfaces."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from uuid import uuid4

import httpx
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from client import (
    AsyncCardRegistry,
    DataCard,
    ModelCard,
    RunCard,
)
from client import transfer as transfer_mod
from registry_core.domain.errors import ArtifactIntegrityError, InvalidArtifact
from tests.conftest import Stack
from tests.support.models import TinyNet

pytestmark = pytest.mark.integration


def _stored_path(stack: Stack, key: str) -> Path | None:
    """Where a key lives on local storage (None on S3)."""
    if "OPSML_S3_ENDPOINT_URL" in stack.extra_env:
        return None
    return Path(stack.env["OPSML_STORAGE_URI"]) / key


async def test_pandas_polars_roundtrip_and_dedupe(
    storage_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    n = 1_000_000
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rng.random(n),
            "label": rng.integers(0, 2, n),
            "city": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        }
    )
    uploaded: list[str] = []
    real_upload = transfer_mod.upload

    async def spy(http, command_id, files, **kw):  # type: ignore[no-untyped-def]
        uploaded.extend(ref.path for ref, _ in files)
        return await real_upload(http, command_id, files, **kw)

    monkeypatch.setattr(transfer_mod, "upload", spy)
    async with AsyncCardRegistry("data", tracking_uri=storage_stack.url) as reg:
        card = await reg.register_card(
            DataCard(
                space="d",
                name="big",
                data=df,
                data_splits=[{"label": "pos", "column": "label", "value": 1}],
            )
        )
        assert card.row_count == n and card.data_type == "pandas"
        assert set(card.feature_map) == {"id", "x", "label", "city"}
        assert [a.path for a in card.artifacts] == ["data.parquet"]
        loaded = await reg.load_card(space="d", name="big")
        await loaded.load()
        pd.testing.assert_frame_equal(loaded.data, df)
        assert len(loaded.split_data()["pos"]) == int(df["label"].sum())

        # identical content again: not uploaded a second time, still stored with the new version
        assert uploaded == ["data.parquet"]
        again = await reg.register_card(DataCard(space="d", name="big", data=df))
        assert uploaded == ["data.parquet"] and again.version == "1.1.0"
        copy = await reg.load_card(uid=again.uid)
        await copy.load()
        pd.testing.assert_frame_equal(copy.data, df)

        frame = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
        pcard = await reg.register_card(DataCard(space="d", name="polars", data=frame))
        ploaded = await reg.load_card(uid=pcard.uid)
        await ploaded.load()
        assert ploaded.data_type == "polars" and ploaded.data.equals(frame)

        arr = rng.random((10, 3))
        ncard = await reg.register_card(DataCard(space="d", name="array", data=arr))
        nloaded = await (await reg.load_card(uid=ncard.uid)).load()
        assert np.array_equal(nloaded.data, arr)


async def test_sklearn_and_torch_models_roundtrip(storage_stack: Stack) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.random((200, 4))
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0))
    pipe.fit(X, y)
    async with AsyncCardRegistry("data", tracking_uri=storage_stack.url) as data_reg:
        data = await data_reg.register_card(DataCard(space="m", name="train", data=X))
    async with AsyncCardRegistry("model", tracking_uri=storage_stack.url) as reg:
        card = await reg.register_card(
            ModelCard(space="m", name="rf", model=pipe, sample_data=X[:5], datacard_uid=data.uid)
        )
        assert card.framework == "sklearn" and "scikit-learn" in card.framework_versions
        got = await reg.load_card(space="m", name="rf")
        await got.load()
        assert np.array_equal(got.model.predict(X), pipe.predict(X))
        assert np.array_equal(got.sample_data, X[:5])

        net = TinyNet(n_in=4, hidden=8)
        tcard = await reg.register_card(
            ModelCard(space="m", name="net", model=net, model_init_kwargs={"n_in": 4, "hidden": 8})
        )
        assert tcard.model_class == "tests.support.models:TinyNet"
        tloaded = await reg.load_card(uid=tcard.uid)
        await tloaded.load()
        xs = torch.randn(6, 4)
        with torch.no_grad():
            assert torch.equal(tloaded.model(xs), net.eval()(xs))


async def test_matplotlib_png_and_generic_files_roundtrip(
    storage_stack: Stack, tmp_path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    run = RunCard(space="r", name="fig")
    run.log_figure(fig, "plots/loss.png")
    plt.close(fig)
    folder = tmp_path / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    (folder / "sub" / "b.json").write_text('{"x": 1}')
    run.log_artifact(folder)
    async with AsyncCardRegistry("run", tracking_uri=storage_stack.url) as reg:
        card = await reg.register_card(run)
        assert sorted(a.path for a in card.artifacts) == [
            "plots/loss.png", "report/a.txt", "report/sub/b.json",
        ]  # fmt: skip
        out = tmp_path / "out"
        paths = await (await reg.load_card(uid=card.uid)).download_artifacts(str(out))
        assert len(paths) == 3
        png = (out / "plots" / "loss.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        ref = next(a for a in card.artifacts if a.path == "plots/loss.png")
        assert hashlib.sha256(png).hexdigest() == ref.sha256
        assert (out / "report" / "sub" / "b.json").read_text() == '{"x": 1}'
        # card.json sits beside the artifacts, metadata only, no pickle
        async with httpx.AsyncClient(base_url=storage_stack.url) as http:
            meta = (await http.get(f"/api/v1/cards/{card.uid}/artifacts/card.json")).json()
            assert meta["uid"] == str(card.uid) and meta["version"] == "1.0.0"
            ranged = await http.get(
                f"/api/v1/cards/{card.uid}/artifacts/plots/loss.png", headers={"Range": "bytes=0-7"}
            )
            assert ranged.status_code == 206 and ranged.content == png[:8]


async def test_corrupt_stored_file_is_detected_on_load(
    storage_stack: Stack, s3_server, tmp_path: Path
) -> None:
    async with AsyncCardRegistry("data", tracking_uri=storage_stack.url) as reg:
        card = await reg.register_card(DataCard(space="c", name="x", data=np.arange(1000)))
        key = f"data/c/x/v{card.version}/data.npy"
        local = _stored_path(storage_stack, key)
        if local is not None:
            blob = bytearray(local.read_bytes())
            blob[-1] ^= 0xFF
            local.write_bytes(bytes(blob))
        else:
            bucket = storage_stack.extra_env["OPSML_STORAGE_URI"].split("/")[2]
            s3_server.client().put_object(
                Bucket=bucket, Key=f"artifacts/{key}", Body=b"x" * card.artifacts[0].size
            )
        loaded = await reg.load_card(uid=card.uid)
        with pytest.raises(ArtifactIntegrityError, match="corrupt"):
            await loaded.download_artifacts(str(tmp_path / "dl"))
        assert not (tmp_path / "dl" / "data.npy").exists()  # no partial file left behind


async def test_missing_staged_file_rejects_the_command_with_the_reason(
    storage_stack: Stack,
) -> None:
    async with AsyncCardRegistry("run", tracking_uri=storage_stack.url) as reg:
        from registry_core.domain.artifacts import ArtifactRef

        command = reg._command_for(
            RunCard(space="s", name="n"), "minor", None,
            artifacts=[ArtifactRef(path="weights.bin", sha256="ab" * 32, size=10)],
        )  # fmt: skip
        with pytest.raises(InvalidArtifact, match=r"weights\.bin was not uploaded"):
            await reg._execute(command)  # published without uploading anything
        ok = await reg.register_card(RunCard(space="s", name="n"))
        assert ok.version == "1.0.0"  # the rejection took no version


async def test_bad_artifact_paths_and_symlinks_are_refused(stack: Stack, tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("x")
    link = tmp_path / "link.txt"
    os.symlink(target, link)
    with pytest.raises(InvalidArtifact, match="symlink"):
        RunCard(space="s", name="n").add_artifact(link)
    for bad in ("../escape", "/etc/passwd", "a/../../b", "a\\b", "card.json", ".hidden"):
        with pytest.raises(InvalidArtifact):
            RunCard(space="s", name="n").add_artifact(target, bad)
    async with httpx.AsyncClient(base_url=stack.url) as http:
        for path in ("..%2F..%2Fetc%2Fpasswd", "a/%2e%2e/b", "x%00y"):
            resp = await http.put(
                f"/api/v1/staging/{uuid4()}/{path}", content=b"x",
                headers={"X-Content-SHA256": hashlib.sha256(b"x").hexdigest()},
            )  # fmt: skip
            assert resp.status_code == 422, (path, resp.text)
        wrong = await http.put(
            f"/api/v1/staging/{uuid4()}/ok.bin", content=b"abc",
            headers={"X-Content-SHA256": "0" * 64},
        )  # fmt: skip
        assert wrong.status_code == 422 and "declared sha256" in wrong.json()["detail"]


async def test_artifact_size_limit(database_url: str, kafka: str, tmp_path: Path) -> None:
    stack = Stack(database_url, kafka, tmp_path, extra_env={"OPSML_MAX_ARTIFACT_BYTES": "1000"})
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        async with AsyncCardRegistry("data", tracking_uri=stack.url) as reg:
            from registry_core.domain.errors import ArtifactTooLarge

            with pytest.raises(ArtifactTooLarge, match="limit of 1000 bytes"):
                await reg.register_card(DataCard(space="s", name="big", data=np.zeros(10_000)))
            assert await reg.list_cards(space="s") == []
    finally:
        stack.stop()


async def test_worker_killed_mid_finalize_yields_one_complete_version(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, kafka, tmp_path)
    try:
        doomed = stack.start_worker(OPSML_FAULT_INJECT="mid-finalize")
        stack.start_api()
        await stack.wait_active()
        run = RunCard(space="f", name="crash")
        for i in range(3):
            f = tmp_path / f"part{i}.bin"
            f.write_bytes(os.urandom(100_000))
            run.add_artifact(f)
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            task = asyncio.create_task(reg.register_card(run))
            for _ in range(300):
                if doomed.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            assert doomed.returncode == -9  # killed after the first artifact copy
            stack.start_worker()
            card = await task  # the client's wait simply continues
            assert card.version == "1.0.0"
            cards = await reg.list_cards(space="f", name="crash")
            assert [c.version for c in cards] == ["1.0.0"]
            got = await reg.load_card(uid=card.uid)
            paths = await got.download_artifacts(str(tmp_path / "dl"))
            assert sorted(p.name for p in paths) == ["part0.bin", "part1.bin", "part2.bin"]
            assert (await reg.register_card(RunCard(space="f", name="crash"))).version == "1.1.0"
    finally:
        stack.stop()
