"""What every workload gets and shares: the run context, name set-up and result helpers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import Scale
from bench.runner import Profiler, run_drivers
from bench.systems.base import System
from bench.util import CpuMeter, latency_summary


@dataclass
class RunContext:
    scale: Scale
    run_id: str
    profile_dir: Path | None = None  # set by --profile: py-spy on ours during W1 and W3
    state: dict[str, Any] = field(default_factory=dict)  # per system, e.g. W4 seed progress


class PendingFeature(Exception):
    """A workload whose feature is not built yet: recorded as 'not run: feature pending'."""


def setup_names(system: System, names: list[str]) -> None:
    if system.needs_name_setup:
        run_drivers(system, [{"op": "setup", "names": [], "create_names": sorted(set(names))}])


def measured(
    system: System,
    ctx: RunContext,
    label: str,
    jobs: list[dict[str, Any]],
    *,
    profile: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run driver jobs with CPU accounting (and py-spy on ours' worker/API/client if asked)."""
    prof = None
    client_prof = None
    if profile and ctx.profile_dir is not None and system.key.startswith("ours"):
        prof = Profiler(ctx.profile_dir, label, system.named_pids())
        client_prof = ctx.profile_dir / f"{label}-client.txt"
    meter = CpuMeter(system.server_pids()).start()
    try:
        results = run_drivers(system, jobs, client_profile=client_prof)
    finally:
        cpu = meter.stop()
        if prof is not None:
            prof.stop()
    return results, cpu


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    lat: list[float] = []
    versions: list[list[str]] = []
    errors: list[str] = []
    n_err = 0
    for r in results:
        lat += r["latencies_ms"]
        versions += r["versions"]
        errors += r["errors"]
        n_err += r["error_count"]
    t0 = min(r["t_start"] for r in results)
    t1 = max(r["t_end"] for r in results)
    return {
        "latencies_ms": lat,
        "versions": versions,
        "errors": errors[:5],
        "error_count": n_err,
        "elapsed_s": max(t1 - t0, 1e-9),
        "planned": sum(r.get("planned", 0) for r in results),
    }


def throughput_block(m: dict[str, Any], cpu: dict[str, float]) -> dict[str, Any]:
    done = len(m["versions"])
    per_k = 1000.0 / done if done else None
    return {
        "registered": done,
        "planned": m["planned"],
        "errors": m["error_count"],
        "error_samples": m["errors"],
        "elapsed_s": round(m["elapsed_s"], 3),
        "cards_per_s": round(done / m["elapsed_s"], 1) if done else 0.0,
        **cpu,
        "server_cpu_s_per_1k": round(cpu["server_cpu_s"] * per_k, 3) if per_k else None,
        "postgres_cpu_s_per_1k": round(cpu["postgres_cpu_s"] * per_k, 3) if per_k else None,
    }


def version_check(system: System, names: list[str], client_versions: list[list[str]]) -> dict:
    """Duplicates and gaps per name, from what the store holds and what clients were told."""
    told: dict[str, list[str]] = defaultdict(list)
    for n, v in client_versions:
        told[n].append(v)
    first = system.ordinal(system.first_version)
    per_name = {}
    tot = {"stored": 0, "dups": 0, "gaps": 0, "client_dups": 0}
    for name in sorted(set(names)):
        stored = system.versions_in_store(name)
        ords = {system.ordinal(v) for v in stored}
        dups = len(stored) - len(set(stored))
        gaps = len(set(range(first, max(ords) + 1)) - ords) if ords else 0
        client_dups = len(told[name]) - len(set(told[name]))
        per_name[name] = {
            "stored": len(stored),
            "dups": dups,
            "gaps": gaps,
            "client_dups": client_dups,
        }
        for k in tot:
            tot[k] += per_name[name][k]
    return {**tot, "per_name": per_name}


__all__ = ["PendingFeature", "RunContext", "latency_summary", "measured", "merge", "setup_names"]
