"""Driver plumbing shared by every system's driver (standard library only: drivers run in the
system's own virtual environment).

Protocol: `python <driver>.py JOB.json RESULT.json GO` - read the job, prepare (imports,
connections, warm-up), touch JOB.json.ready, wait for the GO file to appear (so that all
processes of a workload start together), run, write the result as JSON.

`python <driver>.py --serve DIR`: the same for job after job (the harness writes n to the
driver's stdin for DIR/job-<n>.json; results DIR/res-<n>.json; the GO path is the job's `_go`),
so that one process, whose imports (MLflow's take ~2 s of CPU) are paid once, serves every
workload of a run. It exits at the end of its stdin.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

RegisterOne = Callable[[str], str]


def sequential(register_one: RegisterOne, names: list[str], deadline_s: float | None) -> dict:
    """Register one card per entry of `names`, one at a time; latency per call."""
    lat: list[float] = []
    versions: list[list[str]] = []
    errors: list[str] = []
    t_start = time.time()
    t0 = time.perf_counter()
    for name in names:
        if deadline_s and time.perf_counter() - t0 > deadline_s:
            break
        s = time.perf_counter()
        try:
            v = register_one(name)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        lat.append((time.perf_counter() - s) * 1000)
        versions.append([name, str(v)])
    return {
        "t_start": t_start,
        "t_end": time.time(),
        "latencies_ms": lat,
        "versions": versions,
        "errors": errors[:10],
        "error_count": len(errors),
        "planned": len(names),
    }


def threaded(
    make_register_one: Callable[[], RegisterOne],
    names: list[str],
    threads: int,
    deadline_s: float | None,
) -> dict:
    """The peers' fastest bulk path: `threads` threads, each owning a disjoint set of names
    (so no two threads race on one name), registering its cards one after another."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for n in names:
        by_name[n].append(n)
    buckets: list[list[str]] = [[] for _ in range(threads)]
    for i, (_, items) in enumerate(sorted(by_name.items())):
        buckets[i % threads].extend(items)
    results: list[dict] = [{} for _ in range(threads)]

    def work(i: int) -> None:
        results[i] = sequential(make_register_one(), buckets[i], deadline_s)

    t_start = time.time()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads) if buckets[i]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    merged: dict[str, Any] = {
        "t_start": t_start,
        "t_end": time.time(),
        "latencies_ms": [],
        "versions": [],
        "errors": [],
        "error_count": 0,
        "planned": len(names),
        "threads": threads,
    }
    for r in results:
        if not r:
            continue
        merged["latencies_ms"] += r["latencies_ms"]
        merged["versions"] += r["versions"]
        merged["errors"] += r["errors"]
        merged["error_count"] += r["error_count"]
    merged["errors"] = merged["errors"][:10]
    return merged


def execute_peer(
    make_register_one: Callable[[], RegisterOne],
    job: dict,
    bulk_path: str,
    artifact: Callable[[dict], dict],
) -> dict:
    """The ops every peer driver answers the same way; `bulk_path` names its fastest path."""
    names = job["names"]
    if job["op"] == "register":
        return sequential(make_register_one(), names, job.get("deadline_s"))
    if job["op"] == "bulk":
        out = threaded(make_register_one, names, int(job["threads"]), job.get("deadline_s"))
        out["path"] = f"{bulk_path} from {job['threads']} threads"
        return out
    if job["op"] == "artifact":
        return artifact(job)
    if job["op"] == "setup":  # the work is done while preparing (e.g. creating names)
        return {"t_start": 0, "t_end": 0, "versions": [], "latencies_ms": [], "errors": []}
    raise SystemExit(f"unknown op {job['op']}")


def _wait_go(go_path: Path) -> None:
    deadline = time.monotonic() + 600
    while not go_path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no GO signal within 600 s")
        time.sleep(0.001)


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the harness never reads a half-written result


def serve(d: Path, prepare: Callable[[dict], Any], execute: Callable[[Any, dict], dict]) -> None:
    """Block on stdin (no CPU while idle) for the next job's number; EOF (the harness closed the
    pipe, or is gone) ends the process."""
    for line in sys.stdin:
        n = int(line)
        job_path = d / f"job-{n}.json"
        job = json.loads(job_path.read_text())
        ctx = prepare(job)
        Path(str(job_path) + ".ready").touch()
        _wait_go(Path(job["_go"]))
        result = execute(ctx, job)
        close = getattr(ctx, "close", None)
        if callable(close):
            close()
        _write(d / f"res-{n}.json", result)


def main(prepare: Callable[[dict], Any], execute: Callable[[Any, dict], dict]) -> None:
    if sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), prepare, execute)
        return
    job_path, result_path, go_path = (Path(a) for a in sys.argv[1:4])
    job = json.loads(job_path.read_text())
    ctx = prepare(job)
    Path(str(job_path) + ".ready").touch()
    _wait_go(go_path)
    result = execute(ctx, job)
    result_path.write_text(json.dumps(result))
