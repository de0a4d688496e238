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
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.seed_events import publish, registration_events
from bench.util import create_scratch_db, drop_scratch_db
from registry_core.persistence import db
from registry_core.settings import Settings
from workers import procs
from workers.dev import start_tansu
from workers.replay import replay
from workers.replay.bulk import COLUMNS, BulkState, Decoder
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
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            result = await replay(settings, source="kafka", verify_only=True, bulk=bulk)
            key = "bulk" if bulk else "projection_path"
            out[f"{key}_events_per_s"] = round(result.stats.rate)
            out[f"{key}_s"] = round(result.stats.seconds, 1)
            out[f"{key}_replay_process_cpu_s_incl_verify"] = round(time.process_time() - cpu0, 1)
            out[f"{key}_total_s_incl_verify"] = round(time.perf_counter() - t0, 1)
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
