"""`opsml dev` as users run it, against the size of its log and across a restart (issue 20).

    nice -n 10 .venv/bin/python -m bench.dev_stack --sizes 0,1000,10000

For each size N, on a fresh data directory and a throw-away database of the local Postgres:
starts `opsml dev` (a subprocess, its default log: Tansu in memory, restored from the Postgres
archive at start; `--log s3` runs it with OPSML_DEV_LOG=s3, Tansu's own log in SeaweedFS),
registers N cards the way people fill a log (8 clients, each registering one card at a time: one
produce, so one stored Tansu batch, per command), then measures

* sequential: one client calling `register_card` back to back (`--rounds`): p50 / p99 ms until
  the version is known;
* subscriber: ms from `register_card` returning to a subscriber group (`client.subscribe`, in
  its own thread) receiving that card's event, 100 registrations 50 ms apart: p50 / p99;
* 8 processes: `CardRegistry` in 8 processes registering on one name for `--seconds`: cards/s;

* after quiet: `register_card` after 2.5 s without commands (`--quiet-rounds`): the worker's
  idle fetch wait shows here;

then stops the stack (SIGTERM), starts it again on the same directory and database, and measures
the same once more ("after restart"). Prints one line per measurement (with the 1-minute load
average) and writes everything to bench/results/dev_stack-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.util import create_db, db_url, drop_db, free_port, latency_summary, log, sql

RESULTS = Path(__file__).parent / "results"
FILL_CLIENTS = 8

CLIENT = """
import sys, time
from client import CardRegistry, RunCard
reg = CardRegistry("run", tracking_uri=sys.argv[1])
reg.register_card(RunCard(space="bench", name="w2"))  # warm up (imports, connections)
start, seconds = float(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
n, end = 0, start + seconds
while time.time() < end:
    reg.register_card(RunCard(space="bench", name="w2"))
    n += 1
print(n)
"""


class DevProcess:
    """`opsml dev --port P --data-dir D --database-url U`, started and stopped as a user does."""

    def __init__(self, data_dir: Path, database: str, env: dict[str, str]) -> None:
        self.data_dir, self.database, self.env = data_dir, database, env
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> float:
        logf = self.data_dir.parent / "opsml-dev.out"
        logf.write_text("")
        t0 = time.perf_counter()
        with logf.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "workers.cli", "dev", "--port", str(self.port),
                    "--data-dir", str(self.data_dir), "--database-url", db_url(self.database),
                ],
                env={**os.environ, "OPSML_LOG_LEVEL": "warning", **self.env},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "opsml dev is running" not in logf.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"opsml dev did not start: {logf.read_text()[-1500:]}")
            time.sleep(0.05)
        return time.perf_counter() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


async def fill(uri: str, n: int) -> float:
    """n cards from FILL_CLIENTS clients, one registration at a time each (one produce each)."""
    from client import AsyncCardRegistry, RunCard

    async def client(c: int) -> None:
        async with AsyncCardRegistry("run", tracking_uri=uri) as reg:
            for i in range(c, n, FILL_CLIENTS):
                await reg.register_card(RunCard(space="fill", name=f"n{i % 50}"))

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(FILL_CLIENTS)))
    return time.perf_counter() - t0


async def sequential(uri: str, rounds: int) -> list[float]:
    from client import AsyncCardRegistry, RunCard

    lat = []
    async with AsyncCardRegistry("run", tracking_uri=uri) as reg:
        await reg.register_card(RunCard(space="bench", name="seq"))  # warm up
        for _ in range(rounds):
            t0 = time.perf_counter()
            await reg.register_card(RunCard(space="bench", name="seq"))
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


async def after_quiet(uri: str, rounds: int, pause_s: float = 2.5) -> list[float]:
    """register_card after `pause_s` without commands (past the worker's 2 s busy window): the
    worker's fetch then waits its idle wait (150 ms on the dev stack) before it sees the
    command."""
    from client import AsyncCardRegistry, RunCard

    lat = []
    async with AsyncCardRegistry("run", tracking_uri=uri) as reg:
        for _ in range(rounds):
            await asyncio.sleep(pause_s)
            t0 = time.perf_counter()
            await reg.register_card(RunCard(space="bench", name="quiet"))
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


def subscriber_latency(uri: str, rounds: int) -> list[float]:
    """ms from register_card returning to a subscriber group receiving the card's event."""
    from client import CardRegistry, RunCard
    from client.subscribe import subscribe

    seen: dict[str, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    async def listen() -> None:
        events = subscribe(
            space="bench", name="sub", group_id=f"bench-sub-{time.time_ns()}", from_="latest",
            tracking_uri=uri, on_ready=lambda _: ready.set(),
        )  # fmt: skip
        try:
            async for got in events:
                assert got.card is not None
                seen[str(got.card.uid)] = time.perf_counter()
                if stop.is_set():
                    break
        finally:
            await events.aclose()  # its consumer stops here, not when the loop is torn down

    thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    thread.start()
    if not ready.wait(60):
        raise RuntimeError("the subscriber did not start in 60 s")
    done: dict[str, float] = {}
    with CardRegistry("run", tracking_uri=uri) as reg:
        for _ in range(rounds):
            card = reg.register_card(RunCard(space="bench", name="sub"))
            done[str(card.uid)] = time.perf_counter()
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while len(seen) < len(done) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        reg.register_card(RunCard(space="bench", name="sub"))  # wakes the subscriber to stop
    thread.join(15)
    missing = [u for u in done if u not in seen]
    if missing:
        raise RuntimeError(f"the subscriber never received {len(missing)} of {len(done)} events")
    return [max(0.0, (seen[u] - t) * 1000) for u, t in done.items()]


def processes(uri: str, k: int, seconds: float) -> float:
    """k client processes registering on one name for `seconds`, started together: cards/s."""
    start = time.time() + 10  # after every process has imported the client and warmed up
    cmd = [sys.executable, "-c", CLIENT, uri, str(start), str(seconds)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(k)
    ]
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"a client process failed: {err.decode()[-800:]}")
        counts.append(int(out.decode().strip().splitlines()[-1]))
    return sum(counts) / seconds


def measure(stack: DevProcess, label: str, args: argparse.Namespace) -> dict[str, Any]:
    cards = int(sql(stack.database, "SELECT count(*) AS n FROM cards")[0]["n"])
    events = int(sql(stack.database, "SELECT count(*) AS n FROM event_log")[0]["n"])
    load = os.getloadavg()[0]
    seq = latency_summary(asyncio.run(sequential(stack.uri, args.rounds)))
    sub = latency_summary(subscriber_latency(stack.uri, args.subscriber_rounds))
    rate = processes(stack.uri, 8, args.seconds)
    quiet = latency_summary(asyncio.run(after_quiet(stack.uri, args.quiet_rounds)))
    row = {
        "label": label, "cards_before": cards, "events_before": events, "load_1m": load,
        "sequential": seq, "subscriber": sub, "processes_8_cards_per_s": round(rate, 1),
        "after_quiet": quiet,
    }  # fmt: skip
    log(
        f"{label}: {cards} cards / {events} events in the log; sequential p50"
        f" {seq['p50_ms']:.1f} p99 {seq['p99_ms']:.1f} ms; subscriber p50"
        f" {sub['p50_ms']:.1f} p99 {sub['p99_ms']:.1f} ms; 8 processes {rate:.0f} cards/s;"
        f" after 2.5 s quiet p50 {quiet['p50_ms']:.1f} max {quiet['max_ms']:.1f} ms"
        f" (load {load:.2f})"
    )
    return row


def run_size(n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dev-stack-bench-"))
    database = f"bench_dev_{os.getpid()}_{n}"
    create_db(database)
    stack = DevProcess(work / ".opsml", database, env)
    result: dict[str, Any] = {"size": n}
    try:
        result["start_s"] = round(stack.start(), 2)
        if n:
            took = asyncio.run(fill(stack.uri, n))
            result["fill_s"] = round(took, 1)
            log(f"size {n}: filled in {took:.1f} s ({n / took:.0f} cards/s, one at a time)")
        result["same_run"] = measure(stack, f"size {n}, same run", args)
        stack.stop()
        result["restart_s"] = round(stack.start(), 2)
        log(f"size {n}: restarted in {result['restart_s']} s")
        result["after_restart"] = measure(stack, f"size {n}, after restart", args)
    finally:
        stack.stop()
        drop_db(database)
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0,1000,10000")
    ap.add_argument("--rounds", type=int, default=300, help="sequential registrations")
    ap.add_argument("--subscriber-rounds", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0, help="of the 8-process run")
    ap.add_argument("--quiet-rounds", type=int, default=8, help="registrations after a pause")
    ap.add_argument("--log", choices=["memory", "s3"], default="memory", help="OPSML_DEV_LOG")
    args = ap.parse_args()
    env = {"OPSML_DEV_LOG": args.log}
    log(f"opsml dev, OPSML_DEV_LOG={args.log}, sizes {args.sizes}")
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    runs = [run_size(int(n), args, env) for n in args.sizes.split(",")]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dev_stack-{started}.json"
    out.write_text(json.dumps({"started": started, "args": vars(args), "runs": runs}, indent=1))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
