"""W1: one client registering metadata-only cards one after another over 10 names."""

from __future__ import annotations

from bench.systems.base import System
from bench.util import latency_summary
from bench.workloads.base import RunContext, measured, merge, setup_names, throughput_block

TITLE = "W1 sequential registration, one client"


def run(system: System, ctx: RunContext) -> dict:
    s = ctx.scale
    names = [f"w1-n{i % s.w1_names}" for i in range(s.w1_cards)]
    setup_names(system, names)
    deadline = None if system.key.startswith("ours") else s.peer_deadline_s
    results, cpu = measured(
        system,
        ctx,
        "W1",
        [{"op": "register", "names": names, "deadline_s": deadline}],
        profile=True,
    )
    m = merge(results)
    return {
        **throughput_block(m, cpu),
        **latency_summary(m["latencies_ms"]),
        "names": s.w1_names,
        "deadline_s": deadline,
    }
