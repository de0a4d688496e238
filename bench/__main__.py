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
from datetime import UTC, datetime
from typing import Any

from bench import charts, results
from bench.config import FULL, QUICK, WORK
from bench.systems import SYSTEMS
from bench.util import Unavailable, log, sql
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
    for key in wanted:
        system = SYSTEMS[key](run_id)
        entry: dict[str, Any] = {"label": system.label, "status": "ok"}
        doc["systems"][key] = entry
        started = False
        try:
            log(f"{key}: preparing")
            system.prepare()
            log(f"{key}: starting")
            t = time.perf_counter()
            system.start()
            started = True
            entry["start_s"] = round(time.perf_counter() - t, 1)
            for w in only:
                log(f"{key}: {w}")
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
        except Unavailable as exc:
            entry.update(status="unavailable", reason=str(exc)[:1500])
            log(f"{key}: UNAVAILABLE: {exc}")
        except Exception as exc:
            traceback.print_exc()
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:1500])
        finally:
            entry.update(info=system.info, notes=system.notes)
            if started or system.procs:
                log(f"{key}: stopping")
                try:
                    system.stop()
                except Exception as exc:
                    log(f"{key}: stop failed: {exc}")
            shutil.rmtree(system.workdir, ignore_errors=True)
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
