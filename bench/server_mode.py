"""Server registry vs. client registry (issue 17), interleaved on one stack.

    python -m bench.server_mode --rounds 8 --cards 100 --bulk 5000

`python -m bench --systems ours,ours-server` measures the two modes one after the other, each on
its own stack; on a machine shared with other jobs the load moves between them. This starts one
stack (Tansu in memory, worker, API on a throw-away database: the `ours` system) and alternates
the modes on it: W1's sequential registrations in rounds (HTTP first in even rounds, the
database first in odd ones), then reads of what they registered (`load_card` by uid, and the
newest version of a name) alternating alike, then W3's bulk path (register_cards). The
client's own CPU per registration is measured too (the server registry does the API's reading
and waiting itself). Results: bench/results/server_mode-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from bench.config import RESULTS
from bench.systems.ours import Ours
from bench.util import db_url, latency_summary, log
from client import AsyncCardRegistry, RunCard
from registry_core.eventloop import new_event_loop

MODES = ("http", "server")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.server_mode", description=__doc__)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--cards", type=int, default=100, help="sequential registrations per round")
    ap.add_argument("--bulk", type=int, default=5000, help="cards per register_cards call")
    ap.add_argument("--bulk-rounds", type=int, default=2)
    args = ap.parse_args(argv)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    load_at_start = round(os.getloadavg()[0], 2)
    stack = Ours(f"sm{run_id.lower()}")
    stack.prepare()
    stack.start()
    loop = new_event_loop()
    try:
        regs = {m: AsyncCardRegistry("run", tracking_uri=u)
                for m, u in (("http", stack.uri), ("server", db_url(stack.db)))}  # fmt: skip
        for reg in regs.values():  # warm-up: config, producer, pool, listener
            loop.run_until_complete(reg.connect())
            loop.run_until_complete(reg.register_card(RunCard(space="sm", name="warm-up")))
        seq: dict[str, list[float]] = {m: [] for m in MODES}
        cpu = dict.fromkeys(MODES, 0.0)
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                c0 = time.process_time()
                for j in range(args.cards):
                    t = time.perf_counter()
                    card = RunCard(space="sm", name=f"{mode}-{j % 10}")
                    loop.run_until_complete(regs[mode].register_card(card))
                    seq[mode].append((time.perf_counter() - t) * 1000)
                cpu[mode] += time.process_time() - c0
        # reads of what W1 registered: one card by uid, the newest version of a name
        uids = [c.uid for c in loop.run_until_complete(regs["http"].list_cards(space="sm"))]
        reads: dict[str, dict[str, list[float]]] = {m: {"get": [], "latest": []} for m in MODES}
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                for j in range(args.cards):
                    t = time.perf_counter()
                    loop.run_until_complete(regs[mode].load_card(uid=uids[j % len(uids)]))
                    reads[mode]["get"].append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    loop.run_until_complete(regs[mode].load_card(space="sm", name=f"http-{j % 10}"))
                    reads[mode]["latest"].append((time.perf_counter() - t) * 1000)
        bulk: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(args.bulk_rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                names = [f"b{r}-{mode}-{i % 50}" for i in range(args.bulk)]
                cards = [RunCard(space="sm", name=n) for n in names]
                t = time.perf_counter()
                out = loop.run_until_complete(regs[mode].register_cards(cards))
                assert all(o.status == "registered" for o in out)
                bulk[mode].append(args.bulk / (time.perf_counter() - t))
        for reg in regs.values():
            loop.run_until_complete(reg.close())
    finally:
        loop.close()
        stack.stop()
    doc = {
        "run_id": run_id,
        "args": vars(args),
        "loadavg_1m_at_start": load_at_start,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "W1": {
            m: {
                **latency_summary(seq[m]),
                "client_cpu_ms_per_card": round(cpu[m] * 1000 / len(seq[m]), 3),
            }
            for m in MODES
        },
        "reads": {m: {op: latency_summary(v) for op, v in reads[m].items()} for m in MODES},
        "W3_cards_per_s": {m: [round(x) for x in bulk[m]] for m in MODES},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"server_mode-{run_id}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"results: {path.relative_to(RESULTS.parent.parent)}")
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()
