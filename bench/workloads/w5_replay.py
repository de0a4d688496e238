"""W5: replay rate and worker start-up with a long event log (ours only; the peers have no event
log to rebuild their tables from).

Ours runs W5 on a stack of its own (fresh database and in-memory Tansu, same composition as
`ours`): the `ours` stack of W1-W4 holds W4's SQL-seeded rows, which have no events, so a
verified replay could not match it. Steps:

1. worker start-up with an almost empty log (restart the worker, spawn -> "consuming commands");
2. register `w5_events` run cards through `AsyncCardRegistry.register_cards` (chunks of 5,000,
   100 versions per name), i.e. that many events in opsml.events (plus the epoch markers);
3. worker start-up again, with the long log;
4. `workers.replay.replay(settings, source="kafka", verify_only=True)`: rebuild every read table
   from the log into a fresh schema, compare with the live tables, drop the rebuild. The bulk
   rate (events/s of the projection) and the total (incl. schema creation and comparison).
"""

from __future__ import annotations

import asyncio
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
    from bench.runner import run_drivers
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
        names = [f"w5-n{i % max(1, n // per)}" for i in range(n)]
        t = time.perf_counter()
        (res,) = run_drivers(stack, [{"op": "bulk", "names": names, "chunk": 5000}])
        out["seed_s"] = round(time.perf_counter() - t, 1)
        out["seed_cards_per_s"] = round(n / out["seed_s"])
        if res["error_count"]:
            raise RuntimeError(f"W5 seeding failed: {res['errors'][:3]}")
        log(f"ours: W5 seeded {n} registrations in {out['seed_s']} s")
        out["worker_startup_s_long_log"] = round(stack.restart_worker("long"), 3)
        result, total = asyncio.run(_replay(stack))
        out.update(
            events=result.stats.events,
            replay_events_per_s=round(result.stats.rate),
            replay_bulk_s=round(result.stats.seconds, 1),
            replay_total_s_incl_verify=round(total, 1),
            identical=bool(result.identical),
        )
        if not result.identical:
            out["diffs"] = [d.describe() for d in result.diffs if not d.equal][:5]
        out["note"] = (
            f"replay(source='kafka', verify_only=True) of {result.stats.events:,} events"
            f" ({n:,} registrations seeded by register_cards on a fresh stack); worker start-up"
            " = spawn until 'consuming commands'"
        )
        return out
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


async def _replay(stack: System) -> tuple:
    from registry_core.settings import Settings
    from workers.replay import replay

    env = stack.env  # type: ignore[attr-defined]
    settings = Settings(
        database_url=env["OPSML_DATABASE_URL"],  # type: ignore[arg-type]
        kafka_bootstrap_servers=env["OPSML_KAFKA_BOOTSTRAP_SERVERS"],
        storage_uri=env["OPSML_STORAGE_URI"],
    )
    t0 = time.perf_counter()
    result = await replay(settings, source="kafka", verify_only=True)
    return result, time.perf_counter() - t0
