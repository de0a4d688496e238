"""python -m bench --quick | --full [--only W1,W2] [--systems ours,mlflow,opsml] [--profile]"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench import charts, results
from bench.config import FULL, QUICK, WORK
from bench.runner import close_pool, pool_pids, warm_pool
from bench.systems import SYSTEMS, System
from bench.util import CpuMeter, Unavailable, ensure_venv, log, settle, sql, wait_quiet
from bench.workloads import WORKLOADS, w6_artifact
from bench.workloads.base import PendingFeature, RunContext

DEFAULT_SYSTEMS = "ours,mlflow,mlflow-gunicorn,opsml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="scaled-down run (default)")
    mode.add_argument("--full", action="store_true", help="the full workloads (long)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="workloads, e.g. W1,W2")
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"default {DEFAULT_SYSTEMS}")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy ours' worker, API and client during W1 and W3 (bench/.work/profiles)",
    )
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--no-charts", action="store_true")
    return ap.parse_args(argv)


def machine_info() -> dict[str, Any]:
    try:
        pg = sql("postgres", "SELECT version() AS v")[0]["v"].split(" on ")[0]
    except Exception as exc:
        pg = f"unknown ({exc})"
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": pg,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def bring_up(
    systems: dict[str, System],
    up: dict[str, bool],
    doc: dict[str, Any],
    charts_venv: bool,
    drivers: int,
) -> set[str]:
    """prepare() (install its venv on a first run) and start() every system in parallel threads;
    returns the keys that could not be brought up (their status says why)."""
    failed: set[str] = set()

    def one(key: str) -> None:
        system = systems[key]
        entry: dict[str, Any] = {"label": system.label, "status": "ok"}
        doc["systems"][key] = entry
        try:
            t = time.perf_counter()
            system.prepare()
            entry["prepare_s"] = round(time.perf_counter() - t, 1)  # incl. a first install
            t = time.perf_counter()
            up[key] = True  # from here on stop() must run, even if start() fails half-way
            system.start()
            entry["start_s"] = round(time.perf_counter() - t, 1)
            if system.driver:  # W2's client processes, imports paid now rather than in W1-W3
                warm_pool(system, drivers)
            log(f"{key}: up (prepare {entry['prepare_s']} s, start {entry['start_s']} s)")
        except Unavailable as exc:
            failed.add(key)
            entry.update(status="unavailable", reason=str(exc)[:1500])
            log(f"{key}: UNAVAILABLE: {exc}")
        except Exception as exc:
            traceback.print_exc()
            failed.add(key)
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:1500])

    def tools() -> None:  # the charts' matplotlib venv, installed on a first run
        try:
            ensure_venv("tools", list(charts.REQUIREMENTS))
        except Unavailable as exc:
            log(f"charts venv: {exc}")

    with ThreadPoolExecutor(max_workers=len(systems) + 1) as pool:
        jobs = [pool.submit(one, key) for key in systems]
        if charts_venv:
            jobs.append(pool.submit(tools))
        for job in jobs:
            job.result()
    return failed


def stop_one(key: str, system: System, up: dict[str, bool]) -> None:
    close_pool(system)
    if up.get(key) or system.procs:
        up[key] = False
        log(f"{key}: stopping")
        try:
            system.stop()
        except Exception as exc:
            log(f"{key}: stop failed: {exc}")
        system.procs.clear()
    shutil.rmtree(system.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (CI timeouts, `timeout`) must still stop every server and drop its database
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scale = FULL if args.full else QUICK
    only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [w for w in only if w not in WORKLOADS] + [s for s in wanted if s not in SYSTEMS]
    if unknown:
        print(f"unknown workload/system: {unknown}", file=sys.stderr)
        return 2
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ctx = RunContext(
        scale=scale, run_id=run_id, profile_dir=WORK / "profiles" / run_id if args.profile else None
    )
    doc: dict[str, Any] = {
        "run_id": run_id,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": scale.name,
        "scale_note": scale.note,
        "scale": scale.__dict__,
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "systems": {},
        "workloads": {w: {"title": getattr(WORKLOADS[w], "TITLE", w), "results": {}} for w in only},
    }
    log(f"run {run_id}: {scale.name} ({scale.note}); systems {wanted}; workloads {only}")
    t_all = time.perf_counter()
    systems = {key: SYSTEMS[key](run_id) for key in wanted}
    up = {key: False for key in wanted}
    try:
        # Every system is installed (first run: its venv) and started at once, in threads: the
        # peers' start-up (imports, migrations) overlaps instead of adding up. Workloads then run
        # one system at a time; each system is stopped as soon as its workloads are done, and
        # ours (whose worker polls the broker while idle) runs first.
        failed = bring_up(
            systems,
            up,
            doc,
            charts_venv=not args.no_charts,
            drivers=scale.w2_procs if any(w in only for w in ("W1", "W2", "W3", "W6")) else 0,
        )
        # Up is not idle: MLflow's job consumers and the drivers still import. Workloads start
        # once every started process is quiet, so that nobody's start-up lands in a measurement.
        pids = [p for k, o in systems.items() if up[k] for p in o.server_pids() + pool_pids(o)]
        doc["settle_s"] = round(settle(pids), 1)
        doc["setup_s"] = round(time.perf_counter() - t_all, 1)
        log(f"all systems up in {doc['setup_s']} s")
        for key in wanted:
            system = systems[key]
            entry = doc["systems"][key]
            # the other systems still up sit idle meanwhile: their CPU is recorded
            others = CpuMeter(
                [p for k, o in systems.items() if k != key and up[k] for p in o.server_pids()]
            ).start()
            try:
                if key in failed:
                    continue
                for w in only:
                    # the machine as a whole quiet before each workload (not only the systems'
                    # processes: Postgres works on after the peers' migrations or W5's replay)
                    quiet = wait_quiet(window=0.5)
                    log(f"{key}: {w} (machine quiet after {quiet:.1f} s)")
                    t = time.perf_counter()
                    load_before = round(os.getloadavg()[0], 2)
                    try:
                        res = WORKLOADS[w].run(system, ctx)
                        res["wall_s"] = round(time.perf_counter() - t, 1)
                        res["loadavg_1m_before"] = load_before
                    except PendingFeature as exc:
                        res = {"status": str(exc)}
                    except Exception as exc:
                        traceback.print_exc()
                        res = {"status": f"failed: {type(exc).__name__}: {exc}"[:600]}
                    doc["workloads"][w]["results"][key] = res
                    log(f"{key}: {w} -> {results.one_line(w, res)}")
            finally:
                entry["others_idle_server_cpu_s"] = others.stop()["server_cpu_s"]
                entry.update(info=system.info, notes=system.notes)
                stop_one(key, system, up)
    finally:
        for key, system in systems.items():  # an interrupted run still stops everything
            stop_one(key, system, up)
    doc["run_s"] = round(time.perf_counter() - t_all - doc.get("setup_s", 0.0), 1)
    w6_artifact.cleanup(ctx)
    doc["elapsed_s"] = round(time.perf_counter() - t_all, 1)
    doc["summary"] = results.summary_rows(doc)
    path = results.write(doc)
    log(f"results: {path.relative_to(path.parents[2])}")
    if not args.no_charts:
        charts.render(path)
    table = results.markdown_summary(doc)
    print("\n" + table)
    if not args.no_docs:
        results.update_docs(doc, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
