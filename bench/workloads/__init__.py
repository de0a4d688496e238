"""Workloads by id: each has TITLE and run(system, ctx) -> dict."""

from __future__ import annotations

from bench.workloads import (
    w1_sequential,
    w2_concurrent,
    w3_bulk,
    w4_reads,
    w5_replay,
    w6_artifact,
)

WORKLOADS = {
    "W1": w1_sequential,
    "W2": w2_concurrent,
    "W3": w3_bulk,
    "W4": w4_reads,
    "W5": w5_replay,
    "W6": w6_artifact,
}
