"""W5: replay rate and worker start-up with a long event log (ours only; the peers have no event
log to rebuild their tables from).

Ours runs W5 on a stack of its own (fresh database and in-memory Tansu, same composition as
`ours`): the `ours` stack of W1-W4 holds W4's SQL-seeded rows, which have no events, so a
verified replay could not match it. Steps:

1. worker start-up with an almost empty log (restart the worker, spawn -> "consuming commands");
2. publish `w5_events` CardRegistered events straight to opsml.events (bench/seed_events.py:
   byte for byte what the sequencer writes; 100 versions per name), then restart the worker: its
   start-up catch-up projects them into the live tables with the live projection (timed: the
   live projection's rate, the reference for the replay's bulk rate);
3. worker start-up again, with the long log (it starts from its tracked offset);
4. `workers.replay.replay(settings, source="kafka", verify_only=True)`: rebuild every read table
   from the log into a fresh schema, compare with the live tables, drop the rebuild. The bulk
   rate (events/s, from reading the log to indexes rebuilt) and the total (incl. schema creation
   and comparison).

Registering the events through the worker instead (`register_cards`) runs at ~1,000 cards/s
here: 1M would take ~18 min, so the seeding publishes the events the sequencer would have.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from bench.systems.base import System
from bench.util import log
from bench.workloads.base import RunContext

TITLE = "W5 replay rate and worker start-up with a long event log"
NO_EQUIVALENT = "no equivalent"


def run(system: System, ctx: RunContext) -> dict:
    if not system.key.startswith("ours"):
        return {"status": NO_EQUIVALENT, "note": "no event log to rebuild its tables from"}
    if system.key != "ours":
        return {"status": "see ours (W5 runs on its own fresh stack)"}
    from bench.systems.ours import Ours

    n = ctx.scale.w5_events
    per = ctx.scale.versions_per_seed_name
    stack = Ours(ctx.run_id + "w5")
    stack.logdir = system.logdir / "w5"
    stack.logdir.mkdir(parents=True, exist_ok=True)
    stack.prepare()
    stack.start()
    try:
        out: dict = {"registrations": n}
        out["worker_startup_s_short_log"] = round(stack.restart_worker("short"), 3)
        from bench.seed_events import publish, registration_events

        t = time.perf_counter()
        events = registration_events(n, epoch=_claimed_epoch(stack), per_name=per)
        publish_s = asyncio.run(
            publish(stack.env["OPSML_KAFKA_BOOTSTRAP_SERVERS"], "opsml.events", events)
        )
        del events
        out["seed_s"] = round(time.perf_counter() - t, 1)
        out["seed_publish_s"] = round(publish_s, 1)
        catch_up = stack.restart_worker("catch-up", timeout=3600)
        out["live_projection_catch_up_s"] = round(catch_up, 1)
        out["live_projection_events_per_s"] = round(n / catch_up)
        log(
            f"ours: W5 seeded {n} events in {out['seed_s']} s, worker caught up in {catch_up:.1f} s"
        )
        out["worker_startup_s_long_log"] = round(stack.restart_worker("long"), 3)
        result, total = asyncio.run(_replay(stack))
        out.update(
            events=result.stats.events,
            replay_events_per_s=round(result.stats.rate),
            replay_bulk_s=round(result.stats.seconds, 1),
            replay_total_s_incl_verify=round(total, 1),
            identical=bool(result.identical),
        )
        if os.environ.get("BENCH_W5_AB"):  # A/B on the same stack: the per-batch projection path
            ref, ref_total = asyncio.run(_replay(stack, bulk=False))
            out.update(
                replay_projection_path_events_per_s=round(ref.stats.rate),
                replay_projection_path_total_s=round(ref_total, 1),
            )
        if not result.identical:
            out["diffs"] = [d.describe() for d in result.diffs if not d.equal][:5]
        out["note"] = (
            f"replay(source='kafka', verify_only=True) of {result.stats.events:,} events"
            f" ({n:,} CardRegistered events published to opsml.events, projected into the live"
            " tables by the worker's start-up catch-up); worker start-up = spawn until"
            " 'consuming commands'"
        )
        return out
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def _claimed_epoch(stack: System) -> int:
    from bench.util import sql

    return int(sql(stack.db, "SELECT max(claimed_epoch) AS e FROM tracking")[0]["e"])


async def _replay(stack: System, bulk: bool = True) -> tuple:
    from registry_core.settings import Settings
    from workers.replay import replay

    env = stack.env  # type: ignore[attr-defined]
    settings = Settings(
        database_url=env["OPSML_DATABASE_URL"],  # type: ignore[arg-type]
        kafka_bootstrap_servers=env["OPSML_KAFKA_BOOTSTRAP_SERVERS"],
        storage_uri=env["OPSML_STORAGE_URI"],
    )
    t0 = time.perf_counter()
    result = await replay(settings, source="kafka", verify_only=True, bulk=bulk)
    return result, time.perf_counter() - t0
