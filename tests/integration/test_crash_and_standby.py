"""Crash safety of the exactly-once protocol, and the advisory-lock hot standby."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from uuid import UUID

import pytest

from client import AsyncCardRegistry, RunCard
from registry_core.domain.events import uid_for_command
from tests.conftest import Stack
from tests.integration.helpers import EVENTS, dumps, fetch, outcome, publish_raw, read_topic
from tests.support.wire import command
from workers import procs

pytestmark = pytest.mark.integration


async def _wait_exit(proc, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError("worker did not exit")
        await asyncio.sleep(0.05)
    return proc.returncode


async def test_sigkill_between_publish_and_projection_loses_and_duplicates_nothing(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack(database_url, kafka, tmp_path)
    try:
        doomed = stack.start_worker(OPSML_FAULT_INJECT="after-publish")
        stack.start_api()
        await stack.wait_active(epoch=1)
        body = command()
        cid = body["command_id"]
        await publish_raw(stack.bootstrap, dumps(body))
        assert await _wait_exit(doomed) == -9  # SIGKILLed after Kafka acked its events

        # The event is in the log, but nothing of the batch reached Postgres.
        log = await read_topic(stack.bootstrap, EVENTS)
        registered = [e for e in log if e.get("type") == "card_registered"]
        assert [e["command_id"] for e in registered] == [cid]
        assert await fetch(database_url, "SELECT 1 FROM command_outcomes") == []
        assert await fetch(database_url, "SELECT 1 FROM cards") == []

        # The client retries (same command_id) while the worker is down; then it restarts.
        await publish_raw(stack.bootstrap, dumps(body))
        stack.start_worker()
        await stack.wait_active(epoch=2)
        resp = await outcome(stack.url, cid)
        got = resp.json()
        assert got["status"] == "registered" and got["version"] == "1.0.0"
        assert UUID(got["uid"]) == uid_for_command(UUID(cid))
        # The projected event is the one the killed worker published (caught up, not re-decided).
        assert got["event_offset"] == registered[0]["_offset"]

        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            nxt = await reg.register_card(RunCard(space="demo", name="churn"))
        assert nxt.version == "1.1.0"

        cards = await fetch(database_url, "SELECT version, command_id FROM cards ORDER BY version")
        assert (cards[0]["version"], str(cards[0]["command_id"])) == ("1.0.0", cid)
        assert len(cards) == 2
        log = await read_topic(stack.bootstrap, EVENTS)
        assert sum(e.get("command_id") == cid for e in log) == 1  # decided exactly once
        archived = await fetch(database_url, "SELECT event_offset FROM event_log ORDER BY 1")
        assert [r["event_offset"] for r in archived] == [e["_offset"] for e in log]
    finally:
        stack.stop()


async def test_second_worker_waits_as_standby_and_takes_over(stack: Stack) -> None:
    standby = stack.start_worker()
    deadline = time.monotonic() + 20
    while "hot standby" not in stack.worker_log(1):
        assert time.monotonic() < deadline, "second worker never reported standby"
        await asyncio.sleep(0.05)
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        a = await reg.register_card(RunCard(space="demo", name="churn"))
        assert "card registered" not in stack.worker_log(1)  # the standby decided nothing

        procs.kill(stack.workers[0])
        takeover = await stack.wait_active(epoch=2, timeout=30)
        b = await reg.register_card(RunCard(space="demo", name="churn"))
    print(f"\nstandby took over {takeover:.3f}s after the active worker was SIGKILLed")
    assert standby.poll() is None
    assert (a.version, b.version) == ("1.0.0", "1.1.0")
    assert "card registered" in stack.worker_log(1)
    # Bounded takeover: Postgres frees the lock when the killed session ends; the standby
    # retries every OPSML_LOCK_RETRY_SECONDS (0.1 s here).
    assert takeover < 10, f"takeover took {takeover:.2f}s"
    rows = await fetch(
        stack.database_url, "SELECT version FROM cards WHERE name = 'churn' ORDER BY version"
    )
    assert [r["version"] for r in rows] == ["1.0.0", "1.1.0"]


async def test_an_idle_worker_notices_its_lost_connection_and_restores_a_dropped_commit(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    """A Postgres crash can drop commits it had already acknowledged (synchronous_commit=off,
    or a failover to an asynchronous replica). If the sequencer's last batch is among them and
    no command follows, the waiting clients never see their outcomes unless the idle sequencer
    notices its connection died, starts again and catches up from the log. Here the crash's
    loss is made by hand: the last registration's rows are removed and `tracking` is set back,
    then every connection to the database is terminated, as a crash would."""
    stack = Stack(database_url, kafka, tmp_path)
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active(epoch=1)
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            first = await reg.register_card(RunCard(space="crash", name="idle"))
            (before,) = await fetch(database_url, "SELECT * FROM tracking")
            second = await reg.register_card(RunCard(space="crash", name="idle"))
            assert str(second.version) == "1.1.0"
            (cid,) = await fetch(
                database_url, "SELECT command_id FROM cards WHERE uid = $1", second.uid
            )
            await fetch(
                database_url,
                "WITH c AS (DELETE FROM cards WHERE uid = $1),"
                " o AS (DELETE FROM command_outcomes WHERE command_id = $2),"
                " e AS (DELETE FROM event_log WHERE event_offset > $3)"
                " UPDATE tracking SET command_offset = $4, event_offset = $3",
                second.uid,
                cid["command_id"],
                before["event_offset"],
                before["command_offset"],
            )
            assert await fetch(database_url, "SELECT 1 FROM cards WHERE uid = $1", second.uid) == []
            await fetch(
                database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            # No command follows: the worker has to notice by itself.
            deadline = time.monotonic() + 20
            while not await fetch(
                database_url, "SELECT version FROM cards WHERE uid = $1", second.uid
            ):
                assert time.monotonic() < deadline, (
                    "the idle worker did not restore the dropped registration:\n"
                    + stack.worker_log()[-2000:]
                )
                await asyncio.sleep(0.1)
            assert "closed while it was idle" in stack.worker_log()
            # restored as first decided (caught up from the log, not decided again)
            got = await reg.load_card(uid=second.uid)
            assert str(got.version) == "1.1.0" and got.uid == second.uid
            third = await reg.register_card(RunCard(space="crash", name="idle"))
            assert str(third.version) == "1.2.0"
            assert first.uid != second.uid != third.uid
    finally:
        stack.stop()
