"""W5 (replay rate) and W6 (50 MB artifact): pluggable placeholders until the features exist.
Replace `run` with the real workload; the harness records PendingFeature as 'not run'."""

from __future__ import annotations

from bench.systems.base import System
from bench.workloads.base import PendingFeature, RunContext


class Replay:
    TITLE = "W5 replay rate (rebuild the read model from opsml.events)"

    @staticmethod
    def run(system: System, ctx: RunContext) -> dict:
        raise PendingFeature("not run: feature pending (event-log replay command)")


class Artifact:
    TITLE = "W6 register a card with a 50 MB artifact"

    @staticmethod
    def run(system: System, ctx: RunContext) -> dict:
        raise PendingFeature("not run: feature pending (artifact upload)")
