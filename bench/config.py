"""Paths, scales and targets. Every path is derived from this file's location."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"  # venvs, data dirs, logs, profiles (git-ignored)
VENVS = WORK / "venvs"
RESULTS = BENCH / "results"
DOCS = REPO / "docs" / "benchmarks.md"
DRIVERS = BENCH / "drivers"

# Throw-away databases are created and dropped through this admin connection.
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOSTPORT = os.environ.get("BENCH_PG_HOSTPORT", "127.0.0.1:5432")

SPACE = "bench"


@dataclass(frozen=True)
class Scale:
    name: str
    note: str
    w1_cards: int
    w1_names: int
    w2_cards: int
    w2_procs: int
    w3_cards: int
    w4_sizes: tuple[int, ...]
    w4_requests: int  # per read op and size
    peer_deadline_s: float  # a peer's registration phase stops issuing new work after this
    w4_op_budget_s: float = 10.0  # W4: stop timing one read op (per size) after this
    w4_warmup: int = 20  # W4: untimed requests per op and size
    w4_min_samples: int = 20  # W4: timed requests per op and size, even past the budget
    w5_events: int = 100_000  # CardRegistered events in W5's event log (plus the epoch markers)
    w6_mb: int = 50  # W6 artifact size
    w6_reps: int = 3  # W6 registrations (distinct random content each, so nothing is deduped)
    versions_per_seed_name: int = 100
    seed_chunk: int = 5000


QUICK = Scale(
    name="quick",
    note=(
        "reduced counts (W1 300 cards, W2 400, W3 5,000; W4 at 1k/100k versions, 200 reads per"
        " op; W5 at 20k events; peers' time budget 4 s)"
    ),
    # W1 300 (not 100) and W4 200 reads per op (not 50): with 100 samples a p99 is the second
    # worst, and runs swung by a third between each other
    w1_cards=300,
    w1_names=10,
    w2_cards=400,
    w2_procs=8,
    w3_cards=5000,
    w4_sizes=(1_000, 100_000),
    w4_requests=200,
    peer_deadline_s=4.0,
    w4_op_budget_s=2.0,
    w4_warmup=5,
    w4_min_samples=10,
    w5_events=20_000,
    w6_reps=3,
)
FULL = Scale(
    name="full",
    note="full workloads (W4 at 1k/100k/1M versions, W5 at 1M events)",
    w1_cards=1000,
    w1_names=10,
    w2_cards=4000,
    w2_procs=8,
    w3_cards=20_000,
    w4_sizes=(1_000, 100_000, 1_000_000),
    w4_requests=1000,
    peer_deadline_s=120.0,
    w4_op_budget_s=120.0,
    w5_events=1_000_000,
    w6_reps=5,
)

# Targets for ours (issue 8). W4: p99 <= 5 ms for every read op at every size.
TARGETS = {
    "W1": {"p50_ms": 5.0, "p99_ms": 20.0},
    "W2": {"cards_per_s": 2000.0, "dups": 0, "gaps": 0},
    "W3": {"cards_per_s": 10_000.0},
    "W4": {"p99_ms": 5.0},
}
