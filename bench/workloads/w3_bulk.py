"""W3: one pipeline registering many cards without waiting on each (ours: register_cards;
peers: their fastest client path, a thread pool with disjoint names per thread)."""

from __future__ import annotations

from bench.systems.base import System
from bench.workloads.base import RunContext, measured, merge, setup_names, throughput_block

TITLE = "W3 bulk registration, one pipeline"


def run(system: System, ctx: RunContext) -> dict:
    s = ctx.scale
    n_names = max(10, -(-s.w3_cards // 100))  # <= 100 versions per name for every system
    names = [f"w3-n{i % n_names}" for i in range(s.w3_cards)]
    setup_names(system, names)
    if system.key.startswith("ours"):
        job = {"op": "bulk", "names": names, "chunk": len(names)}
        path = "AsyncCardRegistry.register_cards (all cards in one call: publish all, wait once)"
    else:
        job = {
            "op": "bulk",
            "names": names,
            "threads": system.bulk_threads,
            "deadline_s": s.peer_deadline_s,
        }
        path = f"{system.bulk_threads} threads, each owning disjoint names, sequential calls"
    results, cpu = measured(system, ctx, "W3", [job], profile=True)
    m = merge(results)
    return {
        **throughput_block(m, cpu),
        "path": path,
        "names": n_names,
        "deadline_s": job.get("deadline_s"),
    }
