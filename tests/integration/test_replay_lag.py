"""`opsml replay --verify-only` against a live projection that is behind the log (issue 19): on a
stack stopped by a poison command, verify said "identical" while 40 published events past the
tracking offset were not projected. It must say by how many events, and which, and exit 2; and
an unreachable Kafka is one line naming the address and the setting, not a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import AsyncCardRegistry, RunCard
from tests.conftest import Stack
from tests.integration.helpers import EVENTS, dumps, fetch, publish_raw, read_topic
from tests.support.wire import command
from workers import procs

pytestmark = pytest.mark.integration


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.cli", "replay", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _tracked(dsn: str) -> int:
    return int((await fetch(dsn, "SELECT event_offset FROM tracking"))[0][0])


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the worker did not exit"
        await asyncio.sleep(0.05)
    return proc.returncode


async def test_verify_reports_events_published_and_not_projected(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, kafka, tmp_path)
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            for _ in range(3):
                await reg.register_card(RunCard(space="lag", name="n"))
        up_to_date = await _cli(stack.env, "--verify-only")
        assert up_to_date.returncode == 0, up_to_date.stdout + up_to_date.stderr
        assert up_to_date.stdout.strip().splitlines()[-1] == "identical"
        assert "behind" not in up_to_date.stdout

        # A worker that dies after publishing a batch's events, before projecting them (as one
        # stopped by a command it cannot store does, again at every restart).
        procs.stop(stack.workers[0])
        doomed = stack.start_worker(OPSML_FAULT_INJECT="after-publish")
        await stack.wait_active(epoch=2)
        await publish_raw(
            stack.bootstrap, *(dumps(command(space="lag", name=f"c{i}")) for i in range(5))
        )
        assert await _wait_exit(doomed) == -9
        tracked = await _tracked(database_url)
        log = await read_topic(stack.bootstrap, EVENTS)
        unprojected = [e["_offset"] for e in log if e["_offset"] > tracked]
        assert unprojected and unprojected == list(range(tracked + 1, log[-1]["_offset"] + 1))
        first, last, n = unprojected[0], unprojected[-1], len(unprojected)

        behind = await _cli(stack.env, "--verify-only")
        out = behind.stdout + behind.stderr
        assert behind.returncode == 2, out
        assert (
            f"the live projection is behind the log by {n} events (offsets {first}..{last})"
            in behind.stdout
        ), out
        assert behind.stdout.strip().splitlines()[-1].startswith("BEHIND"), out
        assert "DIFFERENT" not in behind.stdout, out  # the tables agree up to the position

        # A healthy worker catches up on start; verify is satisfied again.
        stack.start_worker()
        await stack.wait_active(epoch=3)
        deadline = time.monotonic() + 30
        while await _tracked(database_url) < last:
            assert time.monotonic() < deadline, "the worker did not catch up"
            await asyncio.sleep(0.05)
        again = await _cli(stack.env, "--verify-only")
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.strip().splitlines()[-1] == "identical"
        assert "behind" not in again.stdout
    finally:
        stack.stop()


async def test_an_unreachable_kafka_is_one_line_naming_the_address_and_the_setting(
    database_url: str,
) -> None:
    (port,) = procs.free_ports(1)  # nothing listens there
    address = f"127.0.0.1:{port}"
    env = {"OPSML_DATABASE_URL": database_url, "OPSML_KAFKA_BOOTSTRAP_SERVERS": address}
    for args in (["--verify-only"], [], ["--republish"]):
        done = await _cli(env, *args)
        label = f"opsml replay {' '.join(args)}: {done.stdout}{done.stderr}"
        assert done.returncode == 1, label
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: cannot reach Kafka"), label
        assert address in lines[0] and "OPSML_KAFKA_BOOTSTRAP_SERVERS" in lines[0], label


async def test_an_unreachable_postgres_is_named_with_its_address_and_setting(
    kafka: str,
) -> None:
    """Both replay entry points raise DatabaseUnreachable (the line `opsml replay` prints),
    naming the address without its password, and the setting - still an OSError."""
    from registry_core.errors import DatabaseUnreachable
    from registry_core.settings import Settings
    from workers.replay import replay, republish

    (port,) = procs.free_ports(1)  # nothing listens there
    settings = Settings(
        database_url=f"postgresql://opsml:s3cret@127.0.0.1:{port}/opsml",  # type: ignore[arg-type]
        kafka_bootstrap_servers=kafka,
    )
    for run in (replay(settings, source="archive"), republish(settings)):
        with pytest.raises(DatabaseUnreachable) as err:
            await run
        line = str(err.value)
        assert "\n" not in line and line.startswith("cannot reach Postgres"), line
        assert f"127.0.0.1:{port}/opsml" in line and "OPSML_DATABASE_URL" in line, line
        assert "s3cret" not in line
        assert isinstance(err.value, OSError)
