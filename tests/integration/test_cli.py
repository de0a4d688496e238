"""The `opsml` CLI against a running stack: register, list, download (the CI-build scenario)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from client import AsyncCardRegistry, ModelCard
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def opsml(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={**os.environ, "OPSML_TRACKING_URI": stack.url},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_register_list_and_download(stack: Stack, tmp_path: Path) -> None:
    out = opsml(
        stack, "register", "--registry", "run", "--space", "cli", "--name", "r", "--tag", "a=b"
    )
    assert out.returncode == 0, out.stderr
    assert "run/cli/r 1.0.0" in out.stdout
    listed = opsml(stack, "list", "--registry", "run", "--space", "cli")
    assert listed.returncode == 0 and "1.0.0" in listed.stdout

    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(300_000))
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        for v in ("1.0.0", "1.5.0", "2.0.0"):
            card = ModelCard(space="cli", name="m")
            card.add_artifact(weights)
            await reg.register_card(card, version=v)
    dest = tmp_path / "pulled"
    got = opsml(stack, "download", "--registry", "model", "--space", "cli", "--name", "m",
                "--version", "^1", "--to", str(dest))  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert "cli/m 1.5.0" in got.stdout and "sha256 verified" in got.stdout
    assert (dest / "weights.bin").read_bytes() == weights.read_bytes()

    missing = opsml(stack, "download", "--registry", "model", "--space", "cli", "--name", "nope",
                    "--to", str(dest))  # fmt: skip
    assert missing.returncode == 1 and "no model card cli/nope" in missing.stderr
    bad = opsml(stack, "register", "--registry", "run", "--space", "cli", "--name", "Bad Name")
    assert bad.returncode == 1 and "is invalid" in bad.stderr
