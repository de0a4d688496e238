"""Back-pressure: the worker's Postgres, or the S3 server holding the artifacts, answers slowly
(a loopback TCP proxy adds latency to every chunk). The worker falls behind, takes bigger
batches (one transaction for many commands), catches up, and its memory stays bounded: peak
RSS (VmHWM) is measured while it works through the backlog.

Short version (CI, default): 2,000 queued commands; 40 cards with a 64 KiB artifact each.
Long version (OPSML_FAULT_SCALE=long): 10,000 queued commands; 200 cards with artifacts.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from client import AsyncCardRegistry, RunCard
from registry_core.domain.cards import Card
from tests.conftest import S3, Stack
from tests.support import faults

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LONG = os.environ.get("OPSML_FAULT_SCALE", "short") == "long"
SPACE = "slow"
# Generous: an idle worker is ~100 MB; the bound catches a backlog being held in memory.
RSS_LIMIT_MB = 400
BATCH_RE = re.compile(r"batch projected\s+commands=(\d+)")


def _via(url: str, proxy: faults.DelayProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"{netloc[0]}@{proxy.address}" if len(netloc) == 2 else proxy.address
    return urlunsplit(parts._replace(netloc=host))


async def _sample(pid: int, peak: faults.PeakMemory, stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak.sample(pid)
        await asyncio.sleep(0.1)
    peak.sample(pid)


async def test_slow_postgres_worker_batches_up_catches_up_and_stays_bounded(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    total, publishers, delay = (10_000, 5, 0.02) if LONG else (2_000, 4, 0.02)
    target = urlsplit(database_url)
    proxy = faults.DelayProxy(target.hostname or "127.0.0.1", target.port or 5432, delay).start()
    stack = Stack(database_url, kafka, tmp_path)
    try:
        # only the worker's connection is slow; the API (and the clients' waits) are not
        worker = stack.start_worker(OPSML_DATABASE_URL=_via(database_url, proxy))
        stack.start_api()
        await stack.wait_active()
        peak, stop = faults.PeakMemory(), asyncio.Event()
        sampler = asyncio.create_task(_sample(worker.pid, peak, stop))
        outcomes = faults.Outcomes()

        async def publisher(n: int) -> None:
            async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
                cards: list[Card] = [
                    RunCard(space=SPACE, name=f"n{i % 20}") for i in range(total // publishers)
                ]
                for card, out in zip(cards, await reg.register_cards(cards), strict=True):
                    if out.status == "registered":
                        outcomes.acked.append((card.name, str(out.version), str(out.uid)))
                    else:
                        outcomes.errors.append(f"{out.status}: {out.reason}")

        t0 = time.monotonic()
        try:
            await asyncio.gather(*(publisher(n) for n in range(publishers)))
        finally:
            stop.set()
            await sampler
        elapsed = time.monotonic() - t0
        batches = [int(m) for m in BATCH_RE.findall(stack.worker_log())]
        print(
            f"\nslow Postgres (+{delay * 1000:.0f} ms each way per chunk, {proxy.chunks} chunks"
            f" proxied): {len(outcomes.acked)} registered in {elapsed:.1f}s"
            f" ({len(outcomes.acked) / elapsed:.0f}/s); {len(batches)} batches, largest"
            f" {max(batches, default=0)} commands; worker peak RSS"
            f" {peak.peak_mb:.0f} MB"
        )
        assert proxy.chunks > 0, "the worker's traffic did not go through the slow proxy"
        assert not outcomes.errors, outcomes.errors[:3]
        assert len(outcomes.acked) == total // publishers * publishers
        # it fell behind and caught up by taking many commands per transaction
        assert max(batches) >= 100, f"largest batch {max(batches)}: no batching under pressure"
        assert 0 < peak.peak_mb < RSS_LIMIT_MB, f"worker peak RSS {peak.peak_mb:.0f} MB"
        await faults.check_registrations(database_url, SPACE, outcomes)
    finally:
        stack.stop()
        proxy.stop()


async def test_slow_s3_worker_catches_up_and_stays_bounded(
    database_url: str, kafka: str, s3_server: S3, s3_bucket: str, tmp_path: Path
) -> None:
    cards_total, clients, delay = (200, 8, 0.02) if LONG else (40, 4, 0.02)
    s3 = urlsplit(s3_server.endpoint)
    proxy = faults.DelayProxy(s3.hostname or "127.0.0.1", s3.port or 80, delay).start()
    slow_env = {**s3_server.env(s3_bucket), "OPSML_S3_ENDPOINT_URL": f"http://{proxy.address}"}
    stack = Stack(database_url, kafka, tmp_path, extra_env=slow_env)
    size = 64 * 1024
    payloads = []
    for n in range(clients):
        p = tmp_path / f"payload-{n}.bin"
        p.write_bytes(os.urandom(size))
        payloads.append(p)
    try:
        worker = stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        peak, stop = faults.PeakMemory(), asyncio.Event()
        sampler = asyncio.create_task(_sample(worker.pid, peak, stop))
        outcomes = faults.Outcomes()

        async def client(n: int) -> None:
            async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
                for i in range(cards_total // clients):
                    card = RunCard(space=SPACE, name=f"n{(n + i) % 5}")
                    # distinct content per card, so every card makes the worker copy in S3
                    body = payloads[n].read_bytes()[:-8] + i.to_bytes(8, "big")
                    path = tmp_path / f"c{n}-{i}.bin"
                    path.write_bytes(body)
                    card.add_artifact(path, "model.bin")
                    await outcomes.register(reg, card)

        t0 = time.monotonic()
        try:
            await asyncio.gather(*(client(n) for n in range(clients)))
        finally:
            stop.set()
            await sampler
        elapsed = time.monotonic() - t0
        print(
            f"\nslow S3 (+{delay * 1000:.0f} ms each way per chunk, {proxy.chunks} chunks"
            f" proxied): {len(outcomes.acked)} cards with a 64 KiB artifact in {elapsed:.1f}s"
            f" ({len(outcomes.acked) / elapsed:.1f}/s); worker peak RSS {peak.peak_mb:.0f} MB"
        )
        assert proxy.chunks > 0
        assert not outcomes.errors, outcomes.errors[:3]
        assert len(outcomes.acked) == cards_total // clients * clients
        assert 0 < peak.peak_mb < RSS_LIMIT_MB, f"worker peak RSS {peak.peak_mb:.0f} MB"
        await faults.check_registrations(database_url, SPACE, outcomes)
        # every card's artifact is in S3 with its size (read directly, not through the proxy)
        s3c = s3_server.client()
        for name, version, _ in outcomes.acked:
            key = f"artifacts/run/{SPACE}/{name}/v{version}/model.bin"
            assert s3c.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == size, key
    finally:
        stack.stop()
        proxy.stop()
