"""Worker start-up time vs. log length, and the replay rate.

    python -m bench.replay_startup --events 100000

Starts a throw-away database (on OPSML_TEST_ADMIN_DATABASE_URL's server), an in-memory Tansu,
a worker and an API (as tests/conftest.py's Stack does), seeds registrations through the client's
bulk path (`AsyncCardRegistry.register_cards`, in chunks), and measures:

* worker start-up: spawn of `opsml worker` -> its "consuming commands" log line (lock taken,
  epoch claimed, marker published, catch-up done, consumer positioned), with a short log and
  again with the full log; the worker starts from the projection's tracked offset, so the two
  should match;
* replay: `opsml replay --verify-only` in-process, from Kafka and from the archive: the bulk
  rate (events/s) and the total including the comparison; then a real replay with the switch,
  and how long it held the tracking lock (the worker's projection waits that long).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.util import create_scratch_db, drop_scratch_db
from client import AsyncCardRegistry, Card, RunCard
from registry_core.settings import Settings
from workers import procs
from workers.dev import start_tansu
from workers.replay import replay


async def _seed(url: str, n: int, chunk: int, names: int) -> float:
    t0 = time.perf_counter()
    async with AsyncCardRegistry("run", tracking_uri=url) as reg:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            cards: list[Card] = [
                RunCard(space="bench", name=f"n{(done + i) % names}", tags={"i": str(done + i)})
                for i in range(k)
            ]
            outcomes = await reg.register_cards(cards)
            assert all(o.status == "registered" for o in outcomes)
            done += k
    return time.perf_counter() - t0


async def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError("API not healthy")


def _start_worker(env: dict[str, str], log: Path) -> tuple[object, float]:
    """Spawn a worker and wait for 'consuming commands'; returns (process, seconds)."""
    t0 = time.perf_counter()
    proc = procs.spawn([sys.executable, "-m", "workers.cli", "worker"], env=env, log_path=log)
    deadline = time.monotonic() + 300
    while "consuming commands" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        time.sleep(0.005)
    return proc, time.perf_counter() - t0


async def main(events: int, chunk: int, names: int) -> dict[str, object]:
    dbname, dsn = await create_scratch_db("opsml_bench")
    tmp = Path(tempfile.mkdtemp(prefix="opsml-bench-"))
    port, api_port = procs.free_ports(2)
    tansu = start_tansu(port, log_path=tmp / "tansu.out")
    env = {
        "OPSML_DATABASE_URL": dsn,
        "OPSML_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "OPSML_LOG_FORMAT": "console",
        "OPSML_LOCK_RETRY_SECONDS": "0.1",
        "PYTHONUNBUFFERED": "1",
    }
    url = f"http://127.0.0.1:{api_port}"
    out: dict[str, object] = {"events": events, "cpus": os.cpu_count()}
    running: list[object] = []
    try:
        worker, _ = _start_worker(env, tmp / "worker0.log")
        running.append(worker)
        api = procs.spawn(
            [sys.executable, "-m", "workers.cli", "api", "--port", str(api_port)],
            env=env,
            log_path=tmp / "api.log",
        )
        running.append(api)
        await _wait_healthy(url)

        await _seed(url, 1000, chunk, names)
        procs.stop(worker)  # type: ignore[arg-type]
        worker, small = _start_worker(env, tmp / "worker1.log")
        running.append(worker)
        out["worker_startup_s_at_1k_events"] = round(small, 3)

        out["seed_s"] = round(await _seed(url, events - 1000, chunk, names), 1)
        out["seed_rate_per_s"] = round((events - 1000) / float(out["seed_s"]))  # type: ignore[arg-type]
        procs.stop(worker)  # type: ignore[arg-type]
        worker, large = _start_worker(env, tmp / "worker2.log")
        running.append(worker)
        out[f"worker_startup_s_at_{events // 1000}k_events"] = round(large, 3)

        settings = Settings(database_url=dsn, kafka_bootstrap_servers=f"127.0.0.1:{port}")  # type: ignore[arg-type]
        for source in ("kafka", "archive"):
            t0 = time.perf_counter()
            result = await replay(settings, source=source, verify_only=True)  # type: ignore[arg-type]
            total = time.perf_counter() - t0
            assert result.identical, [d.describe() for d in result.diffs if not d.equal]
            out[f"replay_{source}_events"] = result.stats.events
            out[f"replay_{source}_bulk_events_per_s"] = round(result.stats.rate)
            out[f"replay_{source}_total_s_incl_verify"] = round(total, 1)
        # The real thing, with the worker running: rebuild, verify, switch.
        t0 = time.perf_counter()
        result = await replay(settings)
        out["replay_switch_total_s"] = round(time.perf_counter() - t0, 1)
        out["replay_switch_lock_ms"] = round(result.lock_seconds * 1000, 1)
        assert result.switched
    finally:
        for p in reversed(running):
            procs.stop(p)  # type: ignore[arg-type]
        procs.stop(tansu)
        await drop_scratch_db(dbname)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--names", type=int, default=1000)
    a = parser.parse_args()
    print(json.dumps(asyncio.run(main(a.events, a.chunk, a.names)), indent=2))
