"""Driver for OpsML 2.2.4 (CardRegistry over HTTP), run in OpsML's own venv."""

from __future__ import annotations

import time

from _common import execute_peer, main
from opsml import CardRegistry, RunCard


class Ctx:
    def __init__(self, job: dict) -> None:
        self.space = job["space"]
        self.reg = CardRegistry("run")
        self.reg.list_cards(name="warmup", repository=self.space, limit=1)  # warm-up

    def make_register_one(self):  # one registry (HTTP session) per thread
        reg = CardRegistry("run")
        space = self.space

        def register_one(name: str) -> str:
            card = RunCard(name=name, repository=space, contact="bench")
            reg.register_card(card)
            return str(card.version)

        return register_one


def prepare(job: dict) -> Ctx:
    return Ctx(job)


def execute(ctx: Ctx, job: dict) -> dict:
    return execute_peer(
        ctx.make_register_one, job, "CardRegistry.register_card", lambda j: artifact(ctx, j)
    )


def artifact(ctx: Ctx, job: dict) -> dict:
    # OpsML 2.2.4's ModelCard needs a framework model interface (scikit-learn, torch, ...),
    # none of which is in its venv; a RunCard's log_artifact_from_file uploads a file
    # through the same HTTP storage API (ApiStorageClient) before the card is registered.
    out: dict = {"seconds": [], "versions": [], "errors": [], "error_count": 0}
    reg = CardRegistry("run")
    for path in job["paths"]:
        s = time.perf_counter()
        card = RunCard(name=job["name"], repository=ctx.space, contact="bench")
        card.log_artifact_from_file("weights", path)
        reg.register_card(card)
        out["seconds"].append(time.perf_counter() - s)
        out["versions"].append(str(card.version))
    return out


if __name__ == "__main__":
    main(prepare, execute)
