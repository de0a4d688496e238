"""The `opsml` CLI's edges a new user meets: refused input, machine-readable lists, downloads
that cannot succeed, operator commands pointed at a stack by `--data-dir`, unreachable services."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from client import AsyncCardRegistry, ModelCard, RunCard
from tests.conftest import Stack

pytestmark = pytest.mark.integration


def opsml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_card_commands_refuse_clearly_and_list_as_json(stack: Stack, tmp_path: Path) -> None:
    env = {"OPSML_TRACKING_URI": stack.url}
    dropped = opsml(
        "register", "--registry", "run", "--space", "cli", "--name", "r", "--tag", "team",
        env=env,
    )  # fmt: skip
    assert dropped.returncode == 1
    assert "--tag 'team': expected key=value" in dropped.stderr

    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        kept = await reg.register_card(RunCard(space="cli", name="r", tags={"team": "a"}))
        gone = await reg.register_card(RunCard(space="cli", name="r"))
        await reg.delete_card(gone)

    listed = opsml("list", "--registry", "run", "--space", "cli", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [(r["version"], r["uid"], r["status"]) for r in records] == [
        ("1.0.0", str(kept.uid), "active")
    ]
    with_deleted = opsml(
        "list", "--registry", "run", "--space", "cli", "--include-deleted", "--json", env=env
    )
    statuses = {r["version"]: r["status"] for r in json.loads(with_deleted.stdout)}
    assert statuses == {"1.0.0": "active", "1.1.0": "deleted"}

    table = opsml("list", "--registry", "run", "--space", "cli", "--tag", "team=a", env=env)
    assert table.returncode == 0 and str(kept.uid) in table.stdout  # the whole uid

    async with AsyncCardRegistry("model", tracking_uri=stack.url) as reg:
        await reg.register_card(ModelCard(space="cli", name="empty"))
    nothing = opsml(
        "download", "--registry", "model", "--space", "cli", "--name", "empty",
        "--to", str(tmp_path / "out"), env=env,
    )  # fmt: skip
    assert nothing.returncode == 1 and "has no files to download" in nothing.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    onto_file = opsml(
        "download", "--registry", "model", "--space", "cli", "--name", "empty",
        "--to", str(a_file), env=env,
    )  # fmt: skip
    assert onto_file.returncode == 1 and "is not a directory" in onto_file.stderr
    assert a_file.read_text() == "x"


def test_register_help_lists_every_registry() -> None:
    out = opsml("register", "--help", env={"COLUMNS": "200"})
    for registry in ("data", "model", "run", "pipeline", "project", "audit", "prompt"):
        assert registry in out.stdout


async def test_operator_commands_read_the_data_dirs_server_env(
    stack: Stack, tmp_path: Path
) -> None:
    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    lines = [f"{k}={v}" for k, v in stack.env.items() if k.startswith("OPSML_")]
    (data_dir / "server.env").write_text("# written by opsml dev\n" + "\n".join(lines) + "\n")
    # The ambient settings point nowhere: only the file can make these work.
    nowhere = {
        "OPSML_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere",
        "OPSML_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
    }
    migrated = opsml("migrate", "--data-dir", str(data_dir), env=nowhere)
    assert migrated.returncode == 0, migrated.stderr
    assert "database is up to date" in migrated.stdout
    created = opsml("token", "create", "--name", "ops", "--data-dir", str(data_dir), env=nowhere)
    assert created.returncode == 0, created.stderr
    listed = opsml("token", "list", "--data-dir", str(data_dir), env=nowhere)
    assert listed.returncode == 0 and "ops" in listed.stdout
    verified = opsml("replay", "--verify-only", "--data-dir", str(data_dir), env=nowhere)
    assert verified.returncode == 0, verified.stderr
    assert "identical" in verified.stdout

    missing = opsml("migrate", "--data-dir", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "no server.env in" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "args", [("migrate",), ("token", "list"), ("replay", "--verify-only")], ids=" ".join
)
def test_an_unreachable_service_is_one_line(args: tuple[str, ...]) -> None:
    port = closed_port()
    out = opsml(
        *args,
        env={
            "OPSML_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/opsml",
            "OPSML_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        },
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr
    error_lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, out.stderr
    assert "OPSML_DATABASE_URL" in error_lines[0] or "OPSML_KAFKA" in error_lines[0]
