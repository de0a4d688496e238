"""Driver for opsml-registry (this repository's client), run with the project's Python."""

from __future__ import annotations

import time
from typing import Any

from _common import main, sequential

from client import AsyncCardRegistry, ModelCard, RunCard
from registry_core.eventloop import new_event_loop


class Ctx:
    def __init__(self, job: dict) -> None:
        # the loop the sync CardRegistry runs its calls on (uvloop when installed), without the
        # sync client's hop to its background thread
        self.loop = new_event_loop()
        self.space = job["space"]
        self.reg = self.run(self._make(job["uri"]))
        # warm-up: fetch the client config and connect the Kafka producer
        self.run(self.reg._get_producer())
        self.run(self.reg.list_records(space=self.space, name="warmup", limit=1))

    async def _make(self, uri: str, registry: str = "run") -> AsyncCardRegistry:
        return AsyncCardRegistry(registry, tracking_uri=uri)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:  # a persistent driver (--serve) runs the next job with a new Ctx
        self.loop.close()

    def register_one(self, name: str) -> str:
        card = self.run(self.reg.register_card(RunCard(space=self.space, name=name)))
        return str(card.version)


def prepare(job: dict) -> Ctx:
    return Ctx(job)


def execute(ctx: Ctx, job: dict) -> dict:
    names: list[str] = job["names"]
    if job["op"] == "register":
        out = sequential(ctx.register_one, names, job.get("deadline_s"))
    elif job["op"] == "bulk":
        chunk = int(job.get("chunk") or len(names) or 1)
        t_start = time.time()
        versions, errors, lat = [], [], []
        for i in range(0, len(names), chunk):
            part = names[i : i + chunk]
            s = time.perf_counter()
            outcomes = ctx.run(
                ctx.reg.register_cards([RunCard(space=ctx.space, name=n) for n in part])
            )
            lat.append((time.perf_counter() - s) * 1000)
            for n, o in zip(part, outcomes, strict=True):
                if o.status == "registered":
                    versions.append([n, str(o.version)])
                else:
                    errors.append(f"{o.status}: {o.error_code} {o.reason}"[:300])
        out = {
            "t_start": t_start,
            "t_end": time.time(),
            "latencies_ms": lat,  # per register_cards call
            "versions": versions,
            "errors": errors[:10],
            "error_count": len(errors),
            "planned": len(names),
            "path": f"AsyncCardRegistry.register_cards, chunks of {chunk}",
        }
    elif job["op"] == "artifact":
        out = {"seconds": [], "versions": [], "errors": [], "error_count": 0}
        models = ctx.run(ctx._make(job["uri"], "model"))
        ctx.run(models._get_producer())  # warm-up, as for the run registry
        for path in job["paths"]:
            s = time.perf_counter()
            card = ModelCard(space=ctx.space, name=job["name"])
            card.add_artifact(path)
            card = ctx.run(models.register_card(card, progress=False))
            out["seconds"].append(time.perf_counter() - s)
            out["versions"].append(str(card.version))
        ctx.run(models.close())
    else:
        raise SystemExit(f"unknown op {job['op']}")
    ctx.run(ctx.reg.close())
    return out


if __name__ == "__main__":
    main(prepare, execute)
