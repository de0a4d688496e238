"""The registry "as of" a moment, measured: p50/p99 of the API's as_of reads on a log of N events.

    python -m bench.as_of                # 100k events (the issue's target: p99 <= 10 ms)
    python -m bench.as_of --events 20000 # smaller, quicker

A fresh database on the local Postgres (PG_ADMIN_URL, as the other benchmarks) is filled by the
live projection (`project()`, batches of 1000) with events the domain's own decider made for
commands on 500 model names: registrations (~60%), tag updates (~20%), alias moves of
prod/staging/canary (~15%), alias removals and deletes (some refused: a version an alias points
at). Events are one second apart in `occurred_at`. Then, for random names and random moments
(an offset or a time), each read is timed as the API runs it - its handler (workers/api/routers)
called on an asyncpg pool, JSON body included, no HTTP:

  alias_then   GET /api/v1/aliases/card?alias=prod&as_of=<time>  (time -> offset, alias, card)
  list_then    GET /api/v1/cards?name=..&as_of=<offset>&limit=20
  latest_then  GET /api/v1/cards?name=..&version=^1&limit=1&as_of=<offset>  (latest matching)
  get_then     GET /api/v1/cards/{uid}?as_of=<offset>
  aliases_then GET /api/v1/aliases?name=..&as_of=<offset>
  list_now, get_now   the same list and get without as_of (the machine's floor, for comparison)

Results (JSON) go to bench/results/as_of-<stamp>.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.util import PG_ADMIN_URL, db_url, latency_summary, log
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.commands import (
    DeleteCard,
    RegisterCard,
    RemoveAlias,
    SetAlias,
    UpdateCard,
)
from registry_core.domain.decider import INITIAL_STATE, Context, NameState, evolve, handle, remember
from registry_core.domain.events import CardRegistered, Event
from registry_core.persistence import db
from registry_core.persistence.projection import LoggedEvent, claim_epoch, project

ALIASES = ("prod", "staging", "canary")
BASE = datetime(2026, 11, 1, tzinfo=UTC)


def history(n: int, names: int, seed: int) -> list[Event]:
    """N events the decider made (one per command), on `names` model names."""
    rng = random.Random(seed)
    states: dict[str, NameState] = {}
    refs: dict[uuid.UUID, CardRecord] = {}
    live: dict[str, list[uuid.UUID]] = {}
    out: list[Event] = []
    for i in range(n):
        name = f"m{rng.randrange(names)}"
        where: dict[str, Any] = {
            "command_id": uuid.uuid4(), "issued_at": BASE, "actor": "bench",
            "registry": RegistryType.MODEL, "space": "bench", "name": name,
        }  # fmt: skip
        state = states.get(name, INITIAL_STATE)
        cards = live.setdefault(name, [])
        r = rng.random()
        command: Any
        if r < 0.6 or not cards:
            command = RegisterCard(**where, card_type="ModelCard", tags={"i": str(i)})
        elif r < 0.8:
            command = UpdateCard(**where, uid=rng.choice(cards), tags={"i": str(i), "u": "1"})
        elif r < 0.95:
            command = SetAlias(**where, alias=rng.choice(ALIASES), uid=rng.choice(cards))
        elif r < 0.98 and state.aliases:
            command = RemoveAlias(**where, alias=rng.choice(sorted(state.aliases)))
        else:
            command = DeleteCard(**where, uid=rng.choice(cards))
        ctx = Context(now=BASE + timedelta(seconds=i), epoch=1, command_offset=i)
        events = handle(command, state, refs, ctx)
        for ev in events:
            state = evolve(state, ev)
            remember(refs, ev)
            if isinstance(ev, CardRegistered):
                cards.append(ev.card.uid)
            elif ev.type == "card_deleted":
                cards.remove(ev.card.uid)  # type: ignore[union-attr]
        states[name] = state
        out.extend(events)
    return out


async def fill(dsn: str, events: list[Event]) -> float:
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
        await claim_epoch(conn, "bench")
        t0 = time.perf_counter()
        for i in range(0, len(events), 1000):
            batch = [LoggedEvent(i + k, ev, True) for k, ev in enumerate(events[i : i + 1000])]
            await project(conn, tracking_name="bench", epoch=None, events=batch)
        await conn.execute("ANALYZE")
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def measure(dsn: str, names: int, samples: int) -> dict[str, Any]:
    from workers.api.routers import aliases, cards

    rng = random.Random(7)
    pool = await db.create_pool(dsn, min_size=2, max_size=2)
    n = int(await pool.fetchval("SELECT count(*) FROM event_log"))
    uids = [r["uid"] for r in await pool.fetch("SELECT uid FROM cards ORDER BY uid")]
    aliased = [r["name"] for r in await pool.fetch("SELECT DISTINCT name FROM alias_history")]
    timings: dict[str, list[float]] = {}

    async def timed(kind: str, call: Any) -> None:
        t0 = time.perf_counter()
        try:
            await call
        except Exception as exc:  # (an alias that did not exist yet then: a 404 is an answer)
            if type(exc).__name__ not in ("AliasNotFound", "CardNotFound"):
                raise
        timings.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)

    try:
        for round_ in range(samples + samples // 10):
            if round_ == samples // 10:
                timings.clear()  # the first tenth warms the pool, plans and caches
            offset = rng.randrange(n)
            when = (BASE + timedelta(seconds=rng.uniform(0, n))).isoformat()
            name = f"m{rng.randrange(names)}"
            reg, sp = "model", "bench"
            await timed(
                "alias_then",
                aliases.alias_card(pool, reg, sp, rng.choice(aliased), "prod", when),
            )
            await timed(
                "list_then",
                cards.list_cards(
                    pool, registry=reg, space=sp, name=name, limit=20, as_of=str(offset),
                    version=None, uid=None, tag=None, max_date=None, sort_by_timestamp=False,
                    ignore_release_candidates=False, include_deleted=False, cursor=None,
                ),
            )  # fmt: skip
            await timed(
                "latest_then",
                cards.list_cards(
                    pool, registry=reg, space=sp, name=name, version="^1", limit=1,
                    ignore_release_candidates=True, as_of=str(offset), uid=None, tag=None,
                    max_date=None, sort_by_timestamp=False, include_deleted=False, cursor=None,
                ),
            )  # fmt: skip
            await timed("get_then", cards.get_card(rng.choice(uids), pool, str(offset)))
            await timed(
                "aliases_then", aliases.list_aliases(pool, reg, sp, name, None, str(offset))
            )
            # the same reads of the registry as it is now: the machine's floor, for comparison
            await timed(
                "list_now",
                cards.list_cards(
                    pool, registry=reg, space=sp, name=name, limit=20, as_of=None,
                    version=None, uid=None, tag=None, max_date=None, sort_by_timestamp=False,
                    ignore_release_candidates=False, include_deleted=False, cursor=None,
                ),
            )  # fmt: skip
            await timed("get_now", cards.get_card(rng.choice(uids), pool, None))
    finally:
        await pool.close()
    return {k: latency_summary(v) for k, v in timings.items()}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--names", type=int, default=500)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--reuse", help="measure again on a database kept by --keep (same --events)")
    args = ap.parse_args()
    name = args.reuse or f"opsml_bench_asof_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    if not args.reuse:
        await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = db_url(name)
    try:
        fill_s = 0.0
        if not args.reuse:
            t0 = time.perf_counter()
            events = history(args.events, args.names, seed=1)
            log(f"decided {len(events)} events in {time.perf_counter() - t0:.1f} s")
            fill_s = await fill(dsn, events)
            log(f"projected them in {fill_s:.1f} s")
        conn = await asyncpg.connect(dsn)
        counts = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}")  # (fixed table names)
            for t in ("event_log", "cards", "card_changes", "alias_history", "aliases")
        }
        await conn.close()
        results = await measure(dsn, args.names, args.samples)
    finally:
        if not (args.keep or args.reuse):
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    report = {
        "bench": "as_of", "events": counts["event_log"], "names": args.names, "rows": counts,
        "samples": args.samples, "project_seconds": round(fill_s, 1), "reads": results,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    out = Path(__file__).parent / "results" / f"as_of-{time.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
