"""Webhook delivery latency: `python -m bench.webhooks [--events 300] [--endpoints 1]`.

Starts a throw-away database, an in-memory Tansu, a worker, an API and `opsml webhooks run` with
the default settings (OPSML_WEBHOOK_ALLOW_PRIVATE=true for the loopback receiver), registers the
endpoints, then:

* **steady**: registers `--events` run cards one at a time (one client, `--gap-ms` between
  them) and measures, per delivery, the time from the event's `occurred_at` (the sequencer's
  decision) to its arrival at the receiver, and the HTTP attempt's own latency from the
  delivery log;
* **burst**: registers `--burst` cards in one bulk call and measures how long the deliveries of
  all of them take to arrive (deliveries per second per endpoint, in order).

Prints one JSON object (and writes it to `--out` if given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.util import create_scratch_db, drop_scratch_db, latency_summary, log
from client import AsyncCardRegistry, RunCard
from workers import procs
from workers.dev import start_tansu


class Arrivals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, int, float, float]] = []  # path, offset, arrived, occurred

    def serve(self) -> tuple[ThreadingHTTPServer, int]:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.time()
                doc = orjson.loads(body)
                occurred = datetime.fromisoformat(doc["timestamp"]).timestamp()
                with arrivals.lock:
                    arrivals.items.append((self.path, doc["offset"], now, occurred))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, server.server_address[1]

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, *_ in self.items if p == path)


async def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as http:
        while time.monotonic() < deadline:
            try:
                resp = await http.get("/healthz")
                if resp.status_code == 200 and resp.json()["sequencer"]["epoch"]:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError("API not healthy")


async def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("deliveries did not all arrive")
        await asyncio.sleep(0.01)


async def main(events: int, endpoints: int, gap_ms: int, burst: int) -> dict[str, Any]:
    dbname, dsn = await create_scratch_db("opsml_bench")
    tmp = Path(tempfile.mkdtemp(prefix="opsml-bench-"))
    port, api_port = procs.free_ports(2)
    tansu = start_tansu(port, log_path=tmp / "tansu.out")
    env = {
        "OPSML_DATABASE_URL": dsn,
        "OPSML_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "OPSML_LOG_FORMAT": "console",
        "OPSML_LOG_LEVEL": "warning",
        "OPSML_WEBHOOK_ALLOW_PRIVATE": "true",
        "PYTHONUNBUFFERED": "1",
    }
    url = f"http://127.0.0.1:{api_port}"
    arrivals = Arrivals()
    server, rport = arrivals.serve()
    out: dict[str, Any] = {
        "events": events, "endpoints": endpoints, "gap_ms": gap_ms, "cpus": os.cpu_count(),
        "load_1m_at_start": os.getloadavg()[0],
    }  # fmt: skip
    running = []
    try:
        cli = [sys.executable, "-m", "workers.cli"]
        running.append(procs.spawn([*cli, "worker"], env=env, log_path=tmp / "worker.log"))
        running.append(
            procs.spawn([*cli, "api", "--port", str(api_port)], env=env, log_path=tmp / "api.log")
        )
        await _wait_healthy(url)
        running.append(procs.spawn([*cli, "webhooks", "run"], env=env, log_path=tmp / "wh.log"))
        paths = [f"/e{i}" for i in range(endpoints)]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            ids = []
            for p in paths:
                resp = await http.post(
                    "/api/v1/webhooks", json={"url": f"http://127.0.0.1:{rport}{p}"}
                )
                resp.raise_for_status()
                ids.append(resp.json()["endpoint_id"])
        async with AsyncCardRegistry("run", tracking_uri=url) as runs:
            # warm-up: the delivery process is up and its connections are open
            await runs.register_card(RunCard(space="bench", name="warm"))
            await _until(lambda: all(arrivals.count(p) >= 1 for p in paths), 60)
            with arrivals.lock:
                arrivals.items.clear()
            for i in range(events):
                await runs.register_card(RunCard(space="bench", name=f"n{i % 10}"))
                await asyncio.sleep(gap_ms / 1000)
            await _until(lambda: all(arrivals.count(p) >= events for p in paths), 120)
            with arrivals.lock:
                steady = list(arrivals.items)
                arrivals.items.clear()
            out["steady_occurred_to_arrival"] = latency_summary(
                [(a - o) * 1000 for _, _, a, o in steady]
            )
            t0 = time.time()
            await runs.register_cards(
                [RunCard(space="bench", name=f"b{i % 10}") for i in range(burst)]
            )
            registered = time.time() - t0
            await _until(lambda: all(arrivals.count(p) >= burst for p in paths), 600)
            with arrivals.lock:
                got = list(arrivals.items)
        last = max(a for _, _, a, _ in got)
        out["burst"] = {
            "cards": burst,
            "registered_s": round(registered, 2),
            "all_delivered_s": round(last - t0, 2),
            "deliveries_per_s_per_endpoint": round(burst / (last - t0), 1),
            "in_order": all(
                [o for p, o, *_ in got if p == path] == sorted(o for p, o, *_ in got if p == path)
                for path in paths
            ),
        }
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT latency_ms FROM opsml_webhooks.attempts WHERE status_code < 300"
            )
        finally:
            await conn.close()
        out["http_attempt"] = latency_summary([r["latency_ms"] for r in rows])
    finally:
        for p in reversed(running):
            procs.stop(p)
        procs.stop(tansu)
        server.shutdown()
        await drop_scratch_db(dbname)
    return out


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--endpoints", type=int, default=1)
    ap.add_argument("--gap-ms", type=int, default=20)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    log(f"webhooks bench: {args.events} events, {args.endpoints} endpoint(s)")
    result = asyncio.run(main(args.events, args.endpoints, args.gap_ms, args.burst))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    cli()
