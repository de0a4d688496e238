"""`opsml dev` keeps its event log in memory and writes the Postgres archive back at every start:
a crash of the whole stack (SIGKILL, nothing stopped cleanly, the broker's memory gone) loses no
acknowledged registration, versions continue, and a subscriber group resumes from the position
the supervisor last saved. (A clean stop and start: tests/e2e/test_dev_stack.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from client import CardRegistry, RunCard
from client.subscribe import subscribe
from tests.e2e.test_dev_lifecycle import _read_until, _start, _stop
from workers import procs
from workers.dev import GROUP_OFFSETS_FILE, GROUPS_SAVE_SECONDS

pytestmark = pytest.mark.e2e


async def _take(uri: str, n: int) -> list[str]:
    """The versions of the next `n` registrations of s/n that group `g` has not finished."""
    got: list[str] = []
    async for received in subscribe(
        space="s", name="n", group_id="g", from_="beginning", tracking_uri=uri, commit_every=1
    ):
        assert received.card is not None
        got.append(received.card.version)
        if len(got) == n:
            break
    return got


def _kill_everything(pid: int) -> None:
    """SIGKILL `opsml dev` and every process it started, at once."""
    parent = psutil.Process(pid)
    everyone = [parent, *parent.children(recursive=True)]
    for p in everyone:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(everyone, timeout=30)


def test_a_killed_stack_keeps_every_acknowledged_registration_and_group_position(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / ".opsml"
    (port,) = procs.free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    first = _start(data, port, database_url)
    try:
        _read_until(first, "opsml dev is running")
        with CardRegistry("run", tracking_uri=uri) as reg:
            acked = [reg.register_card(RunCard(space="s", name="n")).version for _ in range(5)]
        assert acked == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
        # the group finishes 1.0.0 and stops on 1.1.0 (committed: offset of 1.1.0)
        assert asyncio.run(asyncio.wait_for(_take(uri, 2), 60)) == ["1.0.0", "1.1.0"]
        path = data / GROUP_OFFSETS_FILE
        deadline = time.monotonic() + GROUPS_SAVE_SECONDS * 3
        while time.monotonic() < deadline:  # the supervisor's next snapshot
            if path.exists() and json.loads(path.read_text()).get("g", 0) > 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no position of group g saved in {path}")
    finally:
        # no clean shutdown: no last snapshot, the broker's memory is gone
        _kill_everything(first.pid)
        first.communicate(timeout=30)

    second = _start(data, port, database_url)
    try:
        _read_until(second, "opsml dev is running")
        with CardRegistry("run", tracking_uri=uri) as reg:
            listed = sorted(str(c.version) for c in reg.list_cards(space="s", name="n"))
            assert listed == acked
            assert reg.register_card(RunCard(space="s", name="n")).version == "1.5.0"
        # the group resumes at the event it had not finished, not at the beginning
        got = asyncio.run(asyncio.wait_for(_take(uri, 5), 60))
        assert got == ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"]
    finally:
        _took, out = _stop(second)
    assert second.returncode == 0, out
