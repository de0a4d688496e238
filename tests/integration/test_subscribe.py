"""client.subscribe against a real stack: every event exactly once in offset order for a
subscriber started before and one started after the history; fenced events and gap placeholders
are skipped; a killed subscriber resumes from its committed position without gaps; the
router-style decorator filters by registry, tags and the handler's annotated event type."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from client import AsyncCardRegistry, EventRouter, ModelCard, ReceivedEvent, subscribe
from registry_core.contracts.codec import encode
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.events import CardRegistered
from tests.conftest import Stack
from tests.integration.helpers import EVENTS
from tests.integration.test_replay import make_history
from workers import procs

pytestmark = pytest.mark.integration

SUBSCRIBER = """
import asyncio, os, sys, time
from client import subscribe

async def main():
    url, group, out = sys.argv[1], sys.argv[2], sys.argv[3]
    die_after = int(sys.argv[4]) if len(sys.argv) > 4 else None  # lines, then die like a SIGKILL
    written = 0
    with open(out, "a") as f:
        async for ev in subscribe(tracking_uri=url, group_id=group, from_="beginning",
                                  commit_every=3, commit_interval_s=60, fetch_max_wait_ms=20):
            await asyncio.sleep(0.03)  # "processing"
            f.write(f"{ev.offset} {ev.event_id}\\n")
            f.flush()
            written += 1
            if written == die_after:
                os._exit(9)  # no clean-up, no last commit: mid-stream, whatever the timing

asyncio.run(main())
"""


async def _expected(dsn: str) -> list[tuple[int, str]]:
    """What a subscriber must deliver: applied, non-marker events, in offset order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_offset, event_id FROM event_log"
            " WHERE applied AND event_type <> 'sequencer_started' ORDER BY event_offset"
        )
    finally:
        await conn.close()
    return [(r[0], str(r[1])) for r in rows]


async def _collect(
    stack: Stack, into: list[ReceivedEvent], ready: asyncio.Event, **kwargs: Any
) -> None:
    async for ev in subscribe(
        tracking_uri=stack.url, on_ready=lambda _: ready.set(), fetch_max_wait_ms=20, **kwargs
    ):
        into.append(ev)


async def _until(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _inject(bootstrap: str, *values: bytes | None) -> None:
    """Publish straight into the events topic, as a fenced-off sequencer (or a republish) would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(EVENTS, v, key=b"x", partition=0)
    finally:
        await producer.stop()


def _zombie_event() -> bytes:
    """A registration written with epoch 0, lower than the live sequencer's: fenced."""
    now = datetime.now(UTC)
    cid = uuid4()
    card = CardRecord(
        uid=uuid4(), registry=RegistryType.MODEL, space="zombie", name="late", version="9.0.0",
        card_type="ModelCard", created_at=now, command_id=cid, tags={"stage": "prod"},
    )  # fmt: skip
    return encode(
        CardRegistered(event_id=uuid4(), command_id=cid, occurred_at=now, epoch=0, card=card)
    )


async def test_subscribers_before_and_after_see_every_event_once_in_order(
    stack: Stack, tmp_path: Path
) -> None:
    early: list[ReceivedEvent] = []
    ready = asyncio.Event()
    early_task = asyncio.create_task(_collect(stack, early, ready, from_="latest", group_id="a"))
    await asyncio.wait_for(ready.wait(), 20)

    await make_history(stack)
    await _inject(stack.bootstrap, _zombie_event(), None)  # fenced event + gap placeholder
    async with AsyncCardRegistry("model", tracking_uri=stack.url) as model:
        final = await model.register_card(ModelCard(space="demo", name="after-zombie"))
    expected = await _expected(stack.database_url)
    assert expected[-1][1] != "" and len(expected) > 20

    late: list[ReceivedEvent] = []
    late_ready = asyncio.Event()
    late_task = asyncio.create_task(_collect(stack, late, late_ready, from_="beginning"))
    try:
        await _until(lambda: len(early) >= len(expected) and len(late) >= len(expected))
        await asyncio.sleep(0.3)  # nothing more may arrive
        for got in (early, late):
            assert [(e.offset, str(e.event_id)) for e in got] == expected
            assert all(e.event.epoch >= 1 and e.type != "sequencer_started" for e in got)
        assert early[-1].card is not None and early[-1].card.uid == final.uid
    finally:
        for t in (early_task, late_task):
            t.cancel()
        await asyncio.gather(early_task, late_task, return_exceptions=True)

    # The killed subscriber: resumes from its committed position, no gap (at least once).
    out = tmp_path / "seen.txt"
    args = [sys.executable, "-c", SUBSCRIBER, stack.url, "killed", str(out)]
    first = procs.spawn(
        [*args, "10"], log_path=tmp_path / "sub1.log", env={"PYTHONPATH": os.getcwd()}
    )
    await _until(lambda: first.poll() is not None)
    assert first.returncode == 9, (tmp_path / "sub1.log").read_text()[-2000:]
    seen_first = [ln.split() for ln in out.read_text().splitlines()]
    second = procs.spawn(args, log_path=tmp_path / "sub2.log", env={"PYTHONPATH": os.getcwd()})
    try:
        await _until(lambda: out.read_text().splitlines()[-1].split()[1] == expected[-1][1])
    finally:
        procs.stop(second)
    lines = [ln.split() for ln in out.read_text().splitlines()]
    resumed = lines[len(seen_first) :]
    assert int(resumed[0][0]) <= int(seen_first[-1][0]) + 1  # no gap
    redelivered = [ln for ln in seen_first if int(ln[0]) >= int(resumed[0][0])]
    assert len(redelivered) <= 3  # at most the uncommitted tail (commit_every=3)
    unique = list(dict.fromkeys((int(o), e) for o, e in lines))
    assert unique == expected


async def test_router_decorator_filters_by_registry_tags_and_annotated_type(stack: Stack) -> None:
    await make_history(stack)
    router = EventRouter()
    deployed: list[CardRegistered] = []
    everything: list[ReceivedEvent] = []
    stop = asyncio.Event()

    @router.on_event(registry="model", tags={"stage": "prod"})
    async def deploy(event: CardRegistered) -> None:
        deployed.append(event)
        if len(deployed) == 12:
            stop.set()

    @router.on_event(types=["card_updated", "card_deleted"])
    async def audit(event: ReceivedEvent) -> None:
        everything.append(event)

    await asyncio.wait_for(
        router.run(from_="beginning", tracking_uri=stack.url, stop=stop, fetch_max_wait_ms=20), 30
    )
    assert {(e.card.space, e.card.tags["stage"]) for e in deployed} == {("bulk", "prod")}
    assert all(isinstance(e, CardRegistered) for e in deployed)
    # the update that promoted demo/churn to prod is an update: not for a CardRegistered handler
    assert {e.type for e in everything} <= {"card_updated", "card_deleted"}
    assert any(e.type == "card_deleted" for e in everything)
