"""Crash safety under load: 8 concurrent clients register cards across many names while the
worker is SIGKILLed at random moments and restarted. Afterwards every acknowledged
registration is present exactly once, versions per name are gap- and duplicate-free, every
command was decided once, and no card points at a missing artifact.

Short version (CI): OPSML_FAULT_SCALE=short (default) - 1,000 cards, 10 kills.
Long version:       OPSML_FAULT_SCALE=long .venv/bin/pytest tests/faults -s  - 5,000 cards over
                    50 names, 20 kills.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest

from client import AsyncCardRegistry, RunCard
from tests.conftest import Stack
from tests.support.faults import PeakMemory
from workers import procs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SCALES = {"short": (1_000, 20, 10), "long": (5_000, 50, 20)}  # cards, names, kills


async def test_random_worker_kills_lose_and_duplicate_nothing(
    database_url: str, kafka: str, tmp_path: Path
) -> None:
    cards_total, names, kills_wanted = SCALES[os.environ.get("OPSML_FAULT_SCALE", "short")]
    rng = random.Random(int(os.environ.get("OPSML_FAULT_SEED", "1")))
    stack = Stack(database_url, kafka, tmp_path)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(4096))
    acked: list[tuple[str, str, str]] = []  # (name, version, uid)
    try:
        stack.start_worker()
        stack.start_api()
        await stack.wait_active()
        per_client = cards_total // 8
        # A faster stack must not mean fewer kills: each client registers at least per_client
        # cards and keeps going (up to 10x) until the killer has done all its kills.
        cap = per_client * 10
        done = asyncio.Event()
        kills_over = asyncio.Event()
        peak = PeakMemory()  # the largest VmHWM of any worker process, read just before its kill

        async def client(n: int) -> None:
            async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
                i = 0
                while i < per_client or (not kills_over.is_set() and i < cap):
                    card = RunCard(space="faults", name=f"n{rng.randrange(names)}")
                    if i % 10 == 0:
                        card.add_artifact(payload, f"blob-{n}-{i}.bin")
                    got = await reg.register_card(card)
                    acked.append((got.name, str(got.version), str(got.uid)))
                    i += 1

        async def killer() -> int:
            kills = 0
            while not done.is_set() and kills < kills_wanted:
                await asyncio.sleep(rng.uniform(0.2, 0.8))
                if done.is_set():
                    break
                peak.sample(stack.workers[-1].pid)
                procs.kill(stack.workers[-1])
                kills += 1
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                stack.start_worker()
            kills_over.set()
            return kills

        t0 = time.monotonic()
        kill_task = asyncio.create_task(killer())
        await asyncio.gather(*(client(n) for n in range(8)))
        done.set()
        kills = await kill_task
        elapsed = time.monotonic() - t0
        peak.sample(stack.workers[-1].pid)
        print(
            f"\n{len(acked)} acknowledged registrations, {kills} SIGKILLs, {elapsed:.1f}s;"
            f" worker peak RSS {peak.peak_mb:.0f} MB"
        )
        assert 0 < peak.peak_mb < 400, f"worker peak RSS {peak.peak_mb:.0f} MB"
        assert kills >= min(kills_wanted, 10), f"only {kills} kills happened"
        assert len(acked) >= per_client * 8

        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT name, version, uid::text, artifacts FROM cards WHERE space = 'faults'"
            )
            per_command = await conn.fetchval(
                "SELECT count(*) FROM (SELECT command_id FROM event_log WHERE applied AND"
                " event_type = 'card_registered' GROUP BY command_id HAVING count(*) > 1) d"
            )
            published_twice = await conn.fetchval(
                "SELECT count(*) FROM (SELECT command_id FROM event_log WHERE"
                " event_type = 'card_registered' GROUP BY command_id HAVING count(*) > 1) d"
            )
        finally:
            await conn.close()
        stored = {(r["name"], r["version"], r["uid"]) for r in rows}
        # every acknowledged registration is there, exactly once, and nothing else is
        assert sorted(acked) == sorted(stored)
        assert per_command == 0 and published_twice == 0
        by_name: dict[str, list[int]] = defaultdict(list)
        for name, version, _ in acked:
            by_name[name].append(int(version.split(".")[1]))
        for name, minors in by_name.items():
            assert sorted(minors) == list(range(len(minors))), f"{name}: gaps or duplicates"
        # no card points at a missing artifact
        root = Path(stack.env["OPSML_STORAGE_URI"])
        for r in rows:
            manifest = (
                json.loads(r["artifacts"]) if isinstance(r["artifacts"], str) else r["artifacts"]
            )
            for a in manifest:
                f = root / "run" / "faults" / r["name"] / f"v{r['version']}" / a["path"]
                assert f.is_file() and f.stat().st_size == a["size"], f
        # and the event log, replayed from offset 0 into a fresh schema, gives the same tables
        verify = subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
            [sys.executable, "-m", "workers.cli", "replay", "--verify-only"],
            env={**os.environ, **stack.env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0 and "identical" in verify.stdout, (
            verify.stdout[-2000:] + verify.stderr[-2000:]
        )
    finally:
        stack.stop()
