"""W4: read latency over HTTP with growing registry sizes: latest version of a name, get by uid,
a name's 100 newest, and "latest matching ^1.2" where the system has semver ranges."""

from __future__ import annotations

import json
import random
import time

from bench.systems.base import System
from bench.util import HttpTimer, latency_summary, log, wait_quiet
from bench.workloads.base import RunContext

TITLE = "W4 reads vs registry size"
OPS = ("latest", "get_by_uid", "list_100", "latest_caret")


def run(system: System, ctx: RunContext) -> dict:
    s = ctx.scale
    per = s.versions_per_seed_name
    st = ctx.state.setdefault(system.key, {"seeded": 0})
    out: dict = {"sizes": {}}
    for size in s.w4_sizes:
        need = max(0, size - st["seeded"])
        n_names = need // per
        t = time.perf_counter()
        how = system.seed(st["seeded"] // per, n_names, per) if n_names else "already seeded"
        seed_s = time.perf_counter() - t
        st["seeded"] += n_names * per
        total = system.count_versions()
        # Seeding leaves work behind (autovacuum of the new rows, the checkpoint, the seeding
        # client's exit): reads are timed once the machine is quiet again, for every system.
        quiet = wait_quiet(window=0.5) if n_names else 0.0
        log(
            f"{system.key}: {total} versions in the registry ({how}, {seed_s:.1f}s;"
            f" quiet after {quiet:.1f}s)"
        )
        targets = system.sample_targets(200)
        http = HttpTimer(system.uri)  # type: ignore[attr-defined]
        block: dict = {
            "versions_in_registry": total,
            "seeded_with": how,
            "seed_s": round(seed_s, 1),
            "quiet_wait_s": round(quiet, 1),
        }
        rng = random.Random(size)
        budget = s.w4_op_budget_s
        for op in OPS:
            if system.read_requests(targets[0])[op] is None:
                block[op] = {"status": "not applicable"}
                continue
            lat: list[float] = []
            first_error = None
            t_op = time.perf_counter()
            warmup = s.w4_warmup
            for i in range(warmup + s.w4_requests):
                req = system.read_requests(rng.choice(targets))[op]
                assert req is not None
                ms, status, body = http.timed(req.method, req.path, req.body)
                if status >= 400:
                    first_error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
                    break
                if i == 0:
                    items = _items(body)
                    if op == "latest" and not items:
                        raise RuntimeError(
                            f"{system.key}: 'latest' returned nothing: {body[:200]!r}"
                        )
                if i >= warmup:
                    lat.append(ms)
                if i == warmup - 1:
                    t_op = time.perf_counter()  # the time budget starts after the warm-up
                if len(lat) >= s.w4_min_samples and time.perf_counter() - t_op > budget:
                    break
            if first_error and not lat:
                block[op] = {"status": "not supported", "detail": first_error}
            else:
                block[op] = {"status": "ok", "items_in_first_answer": items, **latency_summary(lat)}
        http.close()
        out["sizes"][str(size)] = block
    return out


def _items(body: bytes) -> int:
    """How many cards/versions an answer holds (1 for a single-card answer)."""
    data = json.loads(body)
    if isinstance(data, dict):
        for key in ("cards", "model_versions"):
            if key in data:
                return len(data[key] or [])
        return 1 if data else 0
    return len(data) if isinstance(data, list) else 0
