"""The replay's bulk rate on its own, and the physical limit under it.

    python -m bench.replay_rate --events 1000000 [--raw-copy] [--projection-path]

Starts a throw-away database (migrated, empty live tables) and an in-memory Tansu, publishes
`--events` CardRegistered events (bench/seed_events.py), and runs
`replay(source="kafka", verify_only=True)` (the comparison with the empty live tables differs,
by design: only the rebuild rate is of interest here). Prints the bulk rate (read the log,
decode, COPY, rebuild the indexes) and the phases from the replay's log.

`--raw-copy`: the ceiling: the same rows (pre-built tuples, no Kafka, no decoding) COPYed into
empty index-free copies of event_log, cards and command_outcomes, one connection per table, at
the same time - what Postgres alone takes on this machine. `--projection-path`: the previous
replay path (the live projection, batch by batch) for an A/B on the same log.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench.seed_events import publish, registration_events
from bench.util import create_scratch_db, drop_scratch_db
from registry_core.persistence import db
from registry_core.settings import Settings
from workers import procs
from workers.dev import start_tansu
from workers.replay import replay
from workers.replay.bulk import COLUMNS, BulkState, Decoder, copier_codecs
from workers.replay.rebuild import ReplayStats


async def raw_copy(dsn: str, events: list[bytes]) -> dict[str, float]:
    """Decode once (not timed), then time only the COPY of the rows into index-free tables."""
    decoder = Decoder(BulkState(max_epoch=0), ReplayStats())
    t0 = time.perf_counter()
    rows = decoder.batch(list(enumerate(events)))
    decode_s = time.perf_counter() - t0
    conn = await asyncpg.connect(dsn)
    tables = ("event_log", "cards", "command_outcomes")
    for t in tables:
        await conn.execute(f"CREATE TABLE raw_{t} (LIKE public.{t})")  # no indexes, no keys
    conns = [await asyncpg.connect(dsn) for _ in tables]
    for c in conns:
        await copier_codecs(c)
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            c.copy_records_to_table(f"raw_{t}", records=rows.tables[t], columns=list(COLUMNS[t]))
            for c, t in zip(conns, tables, strict=True)
        )
    )
    copy_s = time.perf_counter() - t0
    for c in conns:
        await c.close()
    await conn.close()
    return {
        "decode_only_s": round(decode_s, 2),
        "decode_only_events_per_s": round(len(events) / decode_s),
        "raw_copy_s": round(copy_s, 2),
        "raw_copy_events_per_s": round(len(events) / copy_s),
    }


_PARALLEL_WORKER = re.compile(r"parallel worker for PID (\d+)")


class CpuSampler(threading.Thread):
    """CPU seconds (user + system) of this process, Tansu, this database's Postgres backends (and
    their parallel workers) and the other Postgres processes (WAL writer, checkpointer, ... and
    anyone else's backends),
    sampled every `period` s, so that a phase of the replay (between two `ReplayStats.marks`) can
    be charged. A backend that exits keeps its last sample. The sampler's own CPU (thread time)
    is subtracted from this process's."""

    def __init__(self, tansu_pid: int, dbname: str, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.tansu = psutil.Process(tansu_pid)
        self.dbname = dbname
        self.period = period
        self.last: dict[tuple[str, int], float] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.own = 0.0
        self.done = threading.Event()

    def _cpu(self, p: psutil.Process) -> float | None:
        try:
            t = p.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None

    def sample(self) -> None:
        procs: list[tuple[str, psutil.Process]] = [("replay", self.me), ("tansu", self.tansu)]
        ours: set[int] = set()
        workers: list[tuple[int, psutil.Process]] = []
        for p in psutil.process_iter(["name", "cmdline"]):
            if (p.info.get("name") or "").startswith("postgres"):
                cmd = " ".join(p.info.get("cmdline") or ())
                if f" {self.dbname} " in cmd:
                    ours.add(p.pid)
                    procs.append(("pg_backends", p))
                elif m := _PARALLEL_WORKER.search(cmd):
                    workers.append((int(m.group(1)), p))
                else:
                    procs.append(("pg_other", p))
        # a parallel worker (index builds) works for its leader's database
        for leader, p in workers:
            procs.append(("pg_backends" if leader in ours else "pg_other", p))
        for kind, p in procs:
            v = self._cpu(p)
            if v is not None:
                self.last[(kind, p.pid)] = v
        totals: dict[str, float] = {}
        for (kind, _), v in self.last.items():
            totals[kind] = totals.get(kind, 0.0) + v
        totals["replay"] = totals.get("replay", 0.0) - self.own
        self.samples.append((time.perf_counter(), totals))

    def run(self) -> None:
        while not self.done.is_set():
            t = time.thread_time()
            self.sample()
            self.own += time.thread_time() - t
            self.done.wait(self.period)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def at(self, t: float) -> dict[str, float]:
        """Totals at time t (linear between the two samples around it)."""
        prev = self.samples[0]
        for cur in self.samples:
            if cur[0] >= t:
                span = cur[0] - prev[0]
                f = (t - prev[0]) / span if span > 0 else 1.0
                keys = set(prev[1]) | set(cur[1])
                return {
                    k: prev[1].get(k, 0.0) + f * (cur[1].get(k, 0.0) - prev[1].get(k, 0.0))
                    for k in keys
                }
            prev = cur
        return dict(self.samples[-1][1])

    def phases(self, marks: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (_, a), (name, b) in itertools.pairwise(marks):
            if b - a < 0.005 and name == "end":
                continue
            ca, cb = self.at(a), self.at(b)
            out[name] = {"wall_s": round(b - a, 2)} | {
                f"{k}_cpu_s": round(cb.get(k, 0.0) - ca.get(k, 0.0), 2) for k in sorted(cb)
            }
        return out


async def main(n: int, raw: bool, projection_path: bool) -> dict[str, Any]:
    dbname, dsn = await create_scratch_db("opsml_rate")
    tmp = Path(tempfile.mkdtemp(prefix="opsml-rate-"))
    (port,) = procs.free_ports(1)
    tansu = start_tansu(port, log_path=tmp / "tansu.out")
    out: dict[str, Any] = {"events": n, "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    try:
        conn = await db.connect(dsn)
        await db.migrate(conn)
        await conn.close()
        events = registration_events(n, epoch=1)
        out["publish_s"] = round(await publish(f"127.0.0.1:{port}", "opsml.events", events), 1)
        if raw:
            out.update(await raw_copy(dsn, events))
        del events
        settings = Settings(database_url=dsn, kafka_bootstrap_servers=f"127.0.0.1:{port}")  # type: ignore[arg-type]
        for bulk in (True, False) if projection_path else (True,):
            key = "bulk" if bulk else "projection_path"
            out[f"{key}_loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
            sampler = CpuSampler(tansu.pid, dbname)
            sampler.sample()
            sampler.start()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            result = await replay(settings, source="kafka", verify_only=True, bulk=bulk)
            sampler.stop()
            st = result.stats
            out[f"{key}_events_per_s"] = round(st.rate)
            out[f"{key}_s"] = round(st.seconds, 1)
            out[f"{key}_replay_process_cpu_s_incl_verify"] = round(time.process_time() - cpu0, 1)
            out[f"{key}_total_s_incl_verify"] = round(time.perf_counter() - t0, 1)
            phases = sampler.phases(st.marks)
            whole = sampler.phases([st.marks[0], ("rebuild", st.marks[-1][1])])["rebuild"]
            out[f"{key}_phases"] = phases
            out[f"{key}_rebuild"] = whole
            out[f"{key}_cpu_ms_per_1k_events"] = {
                k.removesuffix("_cpu_s"): round(1e6 * v / max(st.events, 1), 1)
                for k, v in whole.items()
                if k.endswith("_cpu_s")
            }
        out["loadavg_after"] = os.getloadavg()
    finally:
        procs.stop(tansu)
        await drop_scratch_db(dbname)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--raw-copy", action="store_true")
    ap.add_argument("--projection-path", action="store_true")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.events, a.raw_copy, a.projection_path)), indent=2))
