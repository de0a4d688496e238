"""W2: N client processes registering concurrently, half of all cards on ONE name; then count
duplicate and missing versions per name in the store."""

from __future__ import annotations

from bench.systems.base import System
from bench.util import latency_summary
from bench.workloads.base import (
    RunContext,
    measured,
    merge,
    setup_names,
    throughput_block,
    version_check,
)

TITLE = "W2 concurrent registration, 8 processes, half on one name"


def run(system: System, ctx: RunContext) -> dict:
    s = ctx.scale
    total, procs = s.w2_cards, s.w2_procs
    note = None
    cap = system.max_versions_per_name
    if cap is not None and total // 2 > cap:
        total = 2 * cap
        note = f"scaled down to {total} cards ({cap} on the hot name): {system.label} repeats versions past {cap} per name"  # noqa: E501
    per_proc = total // procs
    jobs, all_names = [], []
    for p in range(procs):
        cold = [f"w2-c{p}-{j}" for j in range(max(1, -(-per_proc // 2 // 50)))]
        names = []
        for i in range(per_proc):
            names.append("w2-hot" if i % 2 == 0 else cold[(i // 2) % len(cold)])
        all_names += names
        jobs.append(
            {
                "op": "register",
                "names": names,
                "deadline_s": None if system.key.startswith("ours") else s.peer_deadline_s,
            }
        )
    setup_names(system, all_names)
    results, cpu = measured(system, ctx, "W2", jobs)
    m = merge(results)
    check = version_check(system, all_names, m["versions"])
    hot = check["per_name"]["w2-hot"]
    return {
        **throughput_block(m, cpu),
        **latency_summary(m["latencies_ms"]),
        "processes": procs,
        "dups": check["dups"],
        "gaps": check["gaps"],
        "client_dups": check["client_dups"],
        "stored": check["stored"],
        "hot_name": hot,
        "note": note,
    }
