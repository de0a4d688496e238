"""`opsml dev` as a user runs it: start, register through the client, stop, start again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from client import CardRegistry, RunCard, subscribe
from workers import procs

pytestmark = pytest.mark.e2e


def _start(data_dir: Path, port: int, database_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workers.cli",
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OPSML_LOG_FORMAT": "console"},
    )


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 90) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; output:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> list[int]:
    """SIGTERM the stack; return the pids of its descendants that are still alive after."""
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    time.sleep(0.3)
    return [k.pid for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]


def _read_group(uri: str, group: str, n: int) -> list[str]:
    """The versions of the next `n` run events for a subscriber group, then stop (committing
    what it finished: all but the last one, which a restarted group gets again)."""

    async def go() -> list[str]:
        seen: list[str] = []
        async for ev in subscribe(
            "run", tracking_uri=uri, group_id=group, from_="beginning", commit_every=1
        ):
            assert ev.card is not None
            seen.append(ev.card.version)
            if len(seen) == n:
                break
        return seen

    return asyncio.run(asyncio.wait_for(go(), 60))


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / ".opsml"


def test_opsml_dev_registers_persists_and_stops_cleanly(stack_dir: Path, database_url: str) -> None:
    (port,) = procs.free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    first = _start(stack_dir, port, database_url, "--demo")
    try:
        out = _read_until(first, "opsml dev is running")
        assert f"OPSML_TRACKING_URI={uri}" in out
        assert any("registered demo RunCard demo/churn version 1.0.0" in line for line in out)
        with CardRegistry("run", tracking_uri=uri) as reg:
            card = RunCard(space="demo", name="churn")
            reg.register_card(card)
            assert card.version == "1.1.0"
            assert [c.version for c in reg.list_cards(space="demo", name="churn")] == [
                "1.1.0",
                "1.0.0",
            ]
        # a subscriber group reads both and stops; opsml dev saves its position at stop
        assert _read_group(uri, "durable", 2) == ["1.0.0", "1.1.0"]
    finally:
        leftovers = _stop(first)
    assert first.returncode == 0
    assert leftovers == [], f"children left running: {leftovers}"
    assert not procs.port_open("127.0.0.1", port), "API port still open after stop"

    # Start again: Postgres keeps everything (the event log is written back from its archive),
    # the data directory the subscriber group's position.
    second = _start(stack_dir, port, database_url)
    try:
        _read_until(second, "opsml dev is running")
        with CardRegistry("run", tracking_uri=uri) as reg:
            card = RunCard(space="demo", name="churn")
            reg.register_card(card)
            assert card.version == "1.2.0"
            assert len(reg.list_cards(space="demo", name="churn")) == 3
        # the group resumes where it stopped: the event it had not finished, then the new one
        assert _read_group(uri, "durable", 2) == ["1.1.0", "1.2.0"]
    finally:
        leftovers = _stop(second)
    assert leftovers == []


def test_opsml_dev_refuses_a_busy_port(stack_dir: Path, database_url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _start(stack_dir, port, database_url)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "already in use" in out
