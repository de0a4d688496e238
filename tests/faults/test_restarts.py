"""Restarting each backing service under load: Postgres (a private server, stopped and started,
plus pg_terminate_backend of every connection), the read API (SIGKILLed and started again on
the same port), and a durable broker (Tansu with its log on S3, SIGKILLed and started again on
the same port). Clients keep registering throughout; afterwards every acknowledged registration
is stored exactly once with the version and uid its client was told, versions per name have no
gaps or duplicates, no client saw an error (they retried), and nobody restarted the worker or
the API by hand - they reconnected by themselves.

Short version (CI, default):  OPSML_FAULT_SCALE=short
Long version:                 OPSML_FAULT_SCALE=long .venv/bin/pytest tests/faults -s
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from client import AsyncCardRegistry, RunCard, retry
from registry_core.persistence import db
from tests.conftest import S3, Stack
from tests.integration.helpers import fetch, read_topic
from tests.support import faults
from workers import procs
from workers.dev import start_tansu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LONG = os.environ.get("OPSML_FAULT_SCALE", "short") == "long"
SEED = int(os.environ.get("OPSML_FAULT_SEED", "1"))
SPACE = "faults"


async def _load(
    stack: Stack,
    clients: int,
    names: int,
    outcomes: faults.Outcomes,
    chaos: Callable[[], Awaitable[None]],
    *,
    payload: Path | None = None,
    rng: random.Random,
    tail: float = 0.5,
) -> list[float]:
    """`clients` registering cards until `chaos()` is over; returns the times of every ack.
    The faults start once every client has had an answer from the registry: before that a client
    gives up after `first_contact_seconds` (a wrong URL is reported, not retried for a minute),
    and on a slow machine the first API kill could land inside that window."""
    done = asyncio.Event()
    warm = asyncio.Event()
    ack_times: list[float] = []
    answered = 0

    async def client(n: int) -> None:
        nonlocal answered
        async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
            await reg.config()
            answered += 1
            if answered == clients:
                warm.set()
            i = 0
            while not done.is_set():
                card = RunCard(space=SPACE, name=f"n{rng.randrange(names)}")
                if payload is not None and i % 5 == 0:
                    card.add_artifact(payload, f"blob-{n}-{i}.bin")
                i += 1
                if await outcomes.register(reg, card):
                    ack_times.append(time.monotonic())

    retried_before = Counter(retry.RETRIED)
    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    try:
        await asyncio.wait_for(warm.wait(), 60)
        await chaos()
        await asyncio.sleep(tail)  # a last stretch of normal traffic after the final fault
    finally:
        done.set()
    await asyncio.gather(*tasks)
    outcomes.retried = Counter(retry.RETRIED) - retried_before
    return ack_times


def _recovery(restored_at: list[float], ack_times: list[float], why: str = "") -> float:
    """Longest time from a service coming back to the next acknowledged registration; `why`
    (the clients' errors, the logs' last lines) goes into the failure message."""
    worst = 0.0
    for t in restored_at:
        after = [a for a in ack_times if a >= t]
        assert after, f"no registration was acknowledged after a restart: no recovery\n{why}"
        worst = max(worst, min(after) - t)
    return worst


def _assert_no_client_errors(outcomes: faults.Outcomes) -> None:
    kinds = Counter(e[:120] for e in outcomes.errors)
    assert not outcomes.errors, f"{len(outcomes.errors)} client errors: {kinds.most_common(5)}"


@pytest.mark.skipif(not faults.available(), reason="PostgreSQL server binaries not installed")
async def test_postgres_restarted_under_load(kafka: str, tmp_path: Path) -> None:
    restarts, terminations = (10, 5) if LONG else (3, 2)
    rng = random.Random(SEED)
    pg = faults.PrivatePostgres()
    pg.start()
    stack: Stack | None = None
    try:
        conn = await db.connect(pg.url())
        await conn.execute('CREATE DATABASE "opsml"')
        await conn.close()
        stack = Stack(pg.url("opsml"), kafka, tmp_path)
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        outcomes = faults.Outcomes()
        restored_at: list[float] = []
        terminated = 0

        async def chaos() -> None:
            nonlocal terminated
            for i in range(restarts):
                await asyncio.sleep(rng.uniform(1.0, 2.0))
                await asyncio.to_thread(pg.stop, "immediate" if i % 2 else "fast")
                await asyncio.sleep(rng.uniform(0.2, 1.0))  # down: clients get 503s / retry
                await asyncio.to_thread(pg.start)
                restored_at.append(time.monotonic())
            for _ in range(terminations):
                await asyncio.sleep(rng.uniform(0.5, 1.0))
                terminated += await faults.terminate_backends(pg.url(), "opsml")
                restored_at.append(time.monotonic())

        t0 = time.monotonic()
        acks = await _load(stack, 6, 10, outcomes, chaos, rng=rng)
        elapsed = time.monotonic() - t0
        worker_log, api_log = stack.worker_log(), (tmp_path / "api.log").read_text()
        recovery = _recovery(
            restored_at,
            acks,
            f"client errors: {outcomes.errors[:3]}\nworker log:\n{worker_log[-3000:]}"
            f"\nAPI log:\n{api_log[-2000:]}",
        )
        print(
            f"\n{len(outcomes.acked)} acknowledged, {len(outcomes.errors)} client errors,"
            f" {restarts} Postgres restarts, {terminated} backends terminated in"
            f" {terminations} rounds, {elapsed:.1f}s; worker restarted its sequencer"
            f" {worker_log.count('starting it again')}x; API answered 503"
            f" {api_log.count('backing service unavailable')}x; worst recovery {recovery:.2f}s;"
            f" client retries {dict(outcomes.retried)}"
        )
        # the faults reached the stack, and the stack came back without anyone restarting it
        assert pg.stops == restarts and terminated >= terminations
        assert worker_log.count("starting it again") >= restarts
        assert stack.workers[0].poll() is None and len(stack.workers) == 1
        assert stack.api is not None and stack.api.poll() is None
        assert len(outcomes.acked) >= 50
        _assert_no_client_errors(outcomes)
        assert outcomes.retried["http 503"] > 0  # clients did meet the outage, and retried
        await faults.check_registrations(stack.database_url, SPACE, outcomes)
        faults.replay_identical(stack.env, tmp_path / "replay.log")
    finally:
        if stack is not None:
            stack.stop()
        pg.close()


async def test_api_restarted_under_load(database_url: str, kafka: str, tmp_path: Path) -> None:
    kills = 12 if LONG else 4
    rng = random.Random(SEED)
    stack = Stack(database_url, kafka, tmp_path)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(4096))
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        outcomes = faults.Outcomes()
        restored_at: list[float] = []

        async def chaos() -> None:
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.5, 1.2))
                assert stack.api is not None
                procs.kill(stack.api)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                await asyncio.to_thread(_restart_api_same_port, stack)
                restored_at.append(time.monotonic())

        t0 = time.monotonic()
        acks = await _load(stack, 6, 10, outcomes, chaos, payload=payload, rng=rng)
        elapsed = time.monotonic() - t0
        recovery = _recovery(restored_at, acks)
        print(
            f"\n{len(outcomes.acked)} acknowledged, {len(outcomes.errors)} client errors,"
            f" {kills} API SIGKILLs, {elapsed:.1f}s; worst recovery {recovery:.2f}s after the"
            f" API listened again; client retries {dict(outcomes.retried)}"
        )
        assert len(outcomes.acked) >= 50
        _assert_no_client_errors(outcomes)
        assert outcomes.retried["ConnectError"] > 0
        assert stack.workers[0].poll() is None
        await faults.check_registrations(database_url, SPACE, outcomes)
    finally:
        stack.stop()


def _restart_api_same_port(stack: Stack) -> None:
    stack.api = procs.spawn(
        [sys.executable, "-m", "workers.cli", "api", "--port", str(stack.api_port)],
        env=stack.env,
        log_path=stack.logs / "api.log",
    )
    procs.wait_port("127.0.0.1", stack.api_port, 30, stack.api)


async def test_durable_broker_restarted_under_load(
    database_url: str, s3_server: S3, tmp_path: Path
) -> None:
    """Tansu keeps its log in S3 (SeaweedFS), as `opsml dev` runs it. 4 clients, not 8: Tansu
    on S3 stalls for seconds under many concurrent producers (docs/architecture.md)."""
    kills = 8 if LONG else 3
    rng = random.Random(SEED)
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    tansu_env = {
        "AWS_ENDPOINT": s3_server.endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    (port,) = procs.free_ports(1)

    def broker() -> procs.subprocess.Popen[bytes]:
        return start_tansu(
            port, storage=f"s3://{bucket}/", env=tansu_env, log_path=tmp_path / "tansu.out"
        )

    tansu = broker()
    stack = Stack(database_url, f"127.0.0.1:{port}", tmp_path)
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        outcomes = faults.Outcomes()
        restored_at: list[float] = []

        async def chaos() -> None:
            nonlocal tansu
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(2.0, 3.0))
                procs.kill(tansu)
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                tansu = await asyncio.to_thread(broker)
                restored_at.append(time.monotonic())

        t0 = time.monotonic()
        acks = await _load(stack, 4, 10, outcomes, chaos, rng=rng, tail=3.0)
        elapsed = time.monotonic() - t0
        recovery = _recovery(restored_at, acks)
        worker_log = stack.worker_log()
        print(
            f"\n{len(outcomes.acked)} acknowledged, {len(outcomes.errors)} client errors,"
            f" {kills} broker SIGKILLs, {elapsed:.1f}s; worker restarted its sequencer"
            f" {worker_log.count('starting it again')}x; worst recovery {recovery:.2f}s;"
            f" client retries {dict(outcomes.retried)}"
        )
        gaps_skipped = worker_log.count("offset gap persisted")
        print(f"worker skipped {gaps_skipped} offset gaps left by the killed broker")
        assert len(outcomes.acked) >= 10
        _assert_no_client_errors(outcomes)
        assert stack.workers[0].poll() is None and len(stack.workers) == 1
        await faults.check_registrations(database_url, SPACE, outcomes)
        # nothing acknowledged was lost from the durable log: after all the restarts, every
        # event the live projection recorded is in the log at the offset it recorded, and the
        # log holds one decision per command (a retried produce may leave a second copy of the
        # same event, same event_id, which the worker archives as not applied: bug 15)
        log = await read_topic(stack.bootstrap, "opsml.events")
        at = {e["_offset"]: e for e in log}
        live = await fetch(database_url, "SELECT event_offset, event_id::text FROM event_log")
        for row in live:
            assert at.get(row["event_offset"], {}).get("event_id") == row["event_id"], row
        decisions: dict[str, set[str]] = {}
        for e in log:
            if e.get("type") == "card_registered":
                decisions.setdefault(e["command_id"], set()).add(e["event_id"])
        assert all(len(ids) == 1 for ids in decisions.values())
        assert {uid for _, _, uid in outcomes.acked} <= {
            e["card"]["uid"] for e in log if e.get("type") == "card_registered"
        }
        copies = len(log) - len({e.get("event_id") for e in log})
        print(f"events log: {len(log)} records, {copies} duplicate copies from retried produces")
        # and a replay from the log gives the live tables
        faults.replay_identical(stack.env, tmp_path / "replay.log")
    finally:
        stack.stop()
        procs.stop(tansu)
