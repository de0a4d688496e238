"""Deploy specs (a TOML file or [tool.opsml.deploy] in pyproject.toml) read and refused with
clear errors, lock files read back, and the example service's deployment files: the
Kubernetes objects validate against a pinned schema, and neither the run stage of the
Dockerfile nor the pod carries registry settings."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from client.deploy import DeployError, LockedCard, SpecEntry, read_lock, read_spec, write_lock
from registry_core.domain.cards import RegistryType

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-service"


def spec(tmp_path: Path, text: str, name: str = "opsml-deploy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_examples_spec_and_a_pyproject_table(tmp_path: Path) -> None:
    entries = read_spec(EXAMPLE / "opsml-deploy.toml")
    assert entries == [
        SpecEntry("churn-sklearn", RegistryType.MODEL, "demo", "churn-sklearn", "^1"),
        SpecEntry("churn-torch", RegistryType.MODEL, "demo", "churn-torch", "^1"),
    ]
    py = spec(
        tmp_path,
        '[project]\nname = "svc"\n\n[[tool.opsml.deploy.cards]]\nregistry = "data"\n'
        'space = "demo"\nname = "train"\nprereleases = true\n',
        "pyproject.toml",
    )
    assert read_spec(py) == [
        SpecEntry("train", RegistryType.DATA, "demo", "train", None, None, True)
    ]
    aliased = spec(tmp_path, '[[cards]]\nregistry="model"\nspace="a"\nname="m"\nalias="prod"\n')
    assert read_spec(aliased)[0].alias == "prod"  # (resolved: tests/e2e/test_model_service.py)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no \\[\\[cards\\]\\] entries"),
        ("[[cards]]\nspace='a'\nname='m'\n", "`registry` is required"),
        ("[[cards]]\nregistry='modle'\nspace='a'\nname='m'\n", "unknown registry 'modle'"),
        ("[[cards]]\nregistry='model'\nspace='a'\nname='My Model'\n", "name 'My Model' is inv"),
        ("[[cards]]\nregistry='model'\nspace='a'\nname='m'\nversion='^x'\n", "cards\\[0\\]"),
        ("[[cards]]\nregistry='model'\nspace='a'\nname='m'\nverison='1'\n", "unknown key.*verison"),
        (
            "[[cards]]\nregistry='model'\nspace='a'\nname='m'\nversion='1'\nalias='p'\n",
            "`version` or `alias`, not both",
        ),
        (
            "[[cards]]\nregistry='model'\nspace='a'\nname='m'\n"
            "[[cards]]\nregistry='model'\nspace='b'\nname='m'\n",
            "two entries download into 'm'",
        ),
        ("[[cards]]\nregistry='model'\nspace='a'\nname='m'\ndir='../up'\n", "cards\\[0\\]"),
        ("[[cards]\n", "not valid TOML"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(DeployError, match=error):
        read_spec(spec(tmp_path, text))


def test_a_pyproject_without_the_table_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"no \[tool.opsml.deploy\] table"):
        read_spec(spec(tmp_path, "[project]\nname='x'\n", "pyproject.toml"))
    with pytest.raises(DeployError, match="no such file"):
        read_spec(tmp_path / "nope.toml")


def test_lock_file_round_trip_and_refusals(tmp_path: Path) -> None:
    card = LockedCard(
        "m", "model", "a", "m", "^1", None, False, "1.2.0", "0" * 8 + "-0000-0000-0000-" + "0" * 12,
        "ModelCard", [{"path": "model.skops", "sha256": "a" * 64, "size": 3}],
    )  # fmt: skip
    write_lock(tmp_path / "opsml.lock", [card])
    assert read_lock(tmp_path / "opsml.lock") == [card]
    assert card.entry() == SpecEntry("m", RegistryType.MODEL, "a", "m", "^1")
    (tmp_path / "bad.lock").write_text('{"lock_format": 7, "cards": []}')
    with pytest.raises(DeployError, match="lock_format is not 1"):
        read_lock(tmp_path / "bad.lock")
    with pytest.raises(DeployError, match="opsml lock SPEC"):
        read_lock(tmp_path / "missing.lock")


def test_the_example_deployment_validates_and_carries_no_registry_settings() -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLE / "k8s" / "deployment.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.31.0", strict=True)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"]:
        assert c["readinessProbe"] and c["livenessProbe"] and c["resources"]["limits"]
        assert not any(e["name"].startswith("OPSML_") for e in c.get("env", []))
        assert "envFrom" not in c

    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    build, run = re.split(r"(?m)^FROM .* AS serve$", dockerfile)
    assert "--mount=type=secret,id=opsml_tracking_uri" in build
    assert "opsml download --lock" in build
    assert "OPSML_" not in run and "secret" not in run
    assert "COPY --from=bundle --chown=app:app /bundle" in run
