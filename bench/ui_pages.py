"""Server time of the web UI's pages with a large registry (issue 15: p99 <= 20 ms for the list
and card pages with 100k cards).

    python -m bench.ui_pages [--cards 100000] [--requests 300] [--json out.json]

Makes a throw-away database on the local Postgres (OPSML_TEST_ADMIN_DATABASE_URL or
postgres@127.0.0.1:5432), migrates it and fills it in SQL: `--cards` cards over the seven
registries (runs 40%, data and models 20% each, the rest shared), 20 spaces, ~10 versions per
name with pre-releases and deleted versions, tags, DataCard feature maps, lineage (model ->
data, run -> model), 50 metric points per run for 5k runs, and one `card_registered` event per
card in the event log. Then the API's own app (workers/api/app.py: every middleware, the guard,
the UI's routes) answers requests in process; a timing layer outermost records the server time
of each request, from its first byte in to its last byte out (no network, no client).

Each page kind gets `--requests` requests over varying names, uids and searches (after 20 warm
ups); the p50, p99, max and page size are printed as a Markdown table (docs/ui.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ADMIN_URL = os.environ.get(
    "OPSML_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# The cards, in one statement: card i has name n = i / 10 (10 versions per name: 1.0.0 ..
# 1.8.0 and a 2.0.0-rc.1; every 25th is deleted), a registry by n's residue, a space of 20.
SEED_CARDS = """
INSERT INTO cards (uid, registry, space, name, version, major, minor, patch, pre_key, card_type,
                   tags, description, metadata, attributes, status, created_at, command_id,
                   actor, event_offset, artifacts)
SELECT md5('card' || i)::uuid,
       reg, 'space-' || ((n / 10) % 20), 'name-' || n,
       CASE WHEN v = 9 THEN '2.0.0-rc.1' ELSE '1.' || v || '.0' END,
       CASE WHEN v = 9 THEN 2 ELSE 1 END, CASE WHEN v = 9 THEN 0 ELSE v END, 0,
       CASE WHEN v = 9 THEN '0' || 'rc.1' ELSE '~' END,
       initcap(reg) || 'Card',
       jsonb_build_object('team', 'team-' || (n % 7),
                          'stage', CASE WHEN v % 3 = 0 THEN 'prod' ELSE 'dev' END),
       'card ' || i,
       '{}'::jsonb,
       CASE reg
         WHEN 'data' THEN jsonb_build_object(
           'data_type', 'pandas', 'row_count', 1000 + i, 'feature_map',
           jsonb_build_object('age', 'int64', 'plan', 'string', 'churned', 'int64'))
         WHEN 'model' THEN jsonb_build_object(
           'framework', 'sklearn', 'model_format', 'skops',
           'framework_versions', jsonb_build_object('scikit-learn', '1.5.0', 'numpy', '2.0.0'),
           'datacard_uid', md5('card' || (i - 10))::uuid)
         WHEN 'run' THEN jsonb_build_object(
           'parameters', jsonb_build_object('lr', 0.01 * v, 'epochs', 10 + v))
                ELSE '{}'::jsonb END,
       CASE WHEN i % 25 = 7 THEN 'deleted' ELSE 'active' END,
       timestamptz '2026-01-01' + i * interval '1 second',
       md5('cmd' || i)::uuid, 'bench', i,
       jsonb_build_array(jsonb_build_object('path', 'model.skops', 'size', 9000 + i,
                         'sha256', encode(sha256(('f' || i)::bytea), 'hex')))
FROM generate_series(0, $1::int - 1) AS i,
     LATERAL (SELECT i / 10 AS n, i % 10 AS v) AS nv,
     LATERAL (SELECT CASE WHEN nv.n % 10 < 4 THEN 'run' WHEN nv.n % 10 < 6 THEN 'data'
                          WHEN nv.n % 10 < 8 THEN 'model' WHEN nv.n % 10 = 8 THEN 'audit'
                          ELSE 'prompt' END AS reg) AS r;
"""
SEED_LINEAGE = """
INSERT INTO lineage (uid, ref_uid, field)
SELECT uid, (attributes ->> 'datacard_uid')::uuid, 'datacard_uid' FROM cards
WHERE registry = 'model' AND attributes ? 'datacard_uid'
ON CONFLICT DO NOTHING;
"""
SEED_METRICS = """
INSERT INTO run_metrics (uid, seq, name, step, value, logged_at)
SELECT c.uid, m.s * 2 + k, CASE k WHEN 0 THEN 'loss' ELSE 'accuracy' END, m.s,
       CASE k WHEN 0 THEN exp(-m.s / 10.0) ELSE 1 - exp(-m.s / 10.0) END, NULL
FROM (SELECT uid FROM cards WHERE registry = 'run' ORDER BY event_offset LIMIT $1) AS c,
     generate_series(0, 24) AS m(s), generate_series(0, 1) AS k;
"""
SEED_EVENTS = """
INSERT INTO event_log (event_offset, event_id, event_type, command_id, epoch, schema_version,
                       applied, occurred_at, payload)
SELECT event_offset, md5('ev' || event_offset)::uuid, 'card_registered', command_id, 1, 1, true,
       created_at, jsonb_build_object('type', 'card_registered', 'card', jsonb_build_object(
           'uid', uid, 'registry', registry, 'space', space, 'name', name, 'version', version))
FROM cards;
"""


def _db_url(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Timed:
    """Outermost ASGI layer: server time per request, first byte in to last byte out."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []
        self.cpu: list[float] = []  # this process's CPU time per request (no Postgres, no waits)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, c0 = time.perf_counter(), time.process_time()
        await self.app(scope, receive, send)
        self.times.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)


async def seed(dsn: str, cards: int, runs_with_metrics: int) -> dict[str, float]:
    from registry_core.persistence import db

    took: dict[str, float] = {}
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
        for label, sql, args in (
            ("cards", SEED_CARDS, (cards,)),
            ("lineage", SEED_LINEAGE, ()),
            ("metrics", SEED_METRICS, (runs_with_metrics,)),
            ("events", SEED_EVENTS, ()),
        ):
            t0 = time.perf_counter()
            await conn.execute(sql, *args)
            took[label] = time.perf_counter() - t0
        # what autovacuum does to a registry in use: statistics, and the visibility map that
        # lets the names search read the index alone
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return took


async def sample(dsn: str) -> dict[str, list[Any]]:
    conn = await asyncpg.connect(dsn)
    try:

        def col(rows: list[Any]) -> list[Any]:
            return [r[0] for r in rows]

        return {
            reg: col(await conn.fetch(
                "SELECT uid FROM cards WHERE registry = $1 AND status = 'active'"
                " ORDER BY random() LIMIT 200", reg))
            for reg in ("data", "model", "audit", "prompt")
        } | {
            "run": col(await conn.fetch(
                "SELECT DISTINCT uid FROM run_metrics ORDER BY uid LIMIT 200")),
            "names": [tuple(r) for r in await conn.fetch(
                "SELECT registry, space, name FROM"
                " (SELECT DISTINCT registry, space, name FROM cards) AS d"
                " ORDER BY random() LIMIT 300")],
        }  # fmt: skip
    finally:
        await conn.close()


def page_kinds(s: dict[str, list[Any]], rnd: random.Random) -> dict[str, Any]:
    spaces = [f"space-{i}" for i in range(20)]
    regs = ["run", "data", "model"]

    def names(path: str) -> Any:
        return lambda: path.format(reg=rnd.choice(regs), space=rnd.choice(spaces))

    return {
        "names: registry/space": names("/ui/r/{reg}/{space}"),
        "names: whole registry": names("/ui/r/{reg}"),
        "names: ^1.2 constraint": names("/ui/r/{reg}/{space}?version=%5E1.2"),
        "names: >=1.5,<2 + tag": names("/ui/r/{reg}?version=%3E%3D1.5%2C%3C2&tags=stage%3Aprod"),
        "names: name search": lambda: f"/ui/r/{rnd.choice(regs)}?q=name-{rnd.randrange(10000)}",
        "names: rare name search": lambda: f"/ui/r/run?q=name-99{rnd.randrange(10)}9",
        "versions of a name": lambda: "/ui/r/{}/{}/{}".format(*rnd.choice(s["names"])),
        "card: DataCard": lambda: f"/ui/cards/{rnd.choice(s['data'])}",
        "card: ModelCard": lambda: f"/ui/cards/{rnd.choice(s['model'])}",
        "card: RunCard (50 points)": lambda: f"/ui/cards/{rnd.choice(s['run'])}",
        "card: RunCard vs 2 runs": lambda: "/ui/cards/{}?compare={}&compare={}".format(
            *rnd.sample(s["run"], 3)
        ),
        "card: AuditCard": lambda: f"/ui/cards/{rnd.choice(s['audit'])}",
        "card: PromptCard": lambda: f"/ui/cards/{rnd.choice(s['prompt'])}",
        "event feed": lambda: "/ui/events",
        "overview (counts kept until a change)": lambda: "/",
    }


async def run(cards: int, requests: int) -> dict[str, Any]:
    name = f"opsml_uibench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = _db_url(name)
    try:
        took = await seed(dsn, cards, runs_with_metrics=min(5000, cards // 10))
        os.environ["OPSML_DATABASE_URL"] = dsn
        from registry_core.persistence import db
        from registry_core.settings import Settings
        from workers.api.app import create_app

        app = create_app(Settings())
        app.state.pool = await db.create_pool(dsn, min_size=1, max_size=4)
        timed = Timed(app)
        rnd = random.Random(15)
        kinds = page_kinds(await sample(dsn), rnd)
        rows: dict[str, Any] = {}
        transport = httpx.ASGITransport(app=timed)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as http:
            for label, make in kinds.items():
                for _ in range(20):
                    (await http.get(make())).raise_for_status()
                timed.times.clear()
                timed.cpu.clear()
                sizes = []
                for _ in range(requests):
                    resp = await http.get(make())
                    resp.raise_for_status()
                    sizes.append(len(resp.content))
                ms = sorted(t * 1000 for t in timed.times)
                rows[label] = {
                    "p50_ms": round(statistics.median(ms), 2),
                    "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 2),
                    "max_ms": round(ms[-1], 2),
                    "cpu_p50_ms": round(statistics.median(timed.cpu) * 1000, 2),
                    "kb": round(statistics.mean(sizes) / 1024, 1),
                }
        await app.state.pool.close()
        return {"cards": cards, "requests_per_page": requests, "seed_seconds": took,
                "load_average": os.getloadavg(), "cpus": os.cpu_count(), "pages": rows}  # fmt: skip
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.cards, args.requests))
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    print(f"{args.cards} cards, {args.requests} requests per page (server time, in process);"
          f" load average {load} on {result['cpus']} CPUs\n")  # fmt: skip
    print("| page | p50 ms | p99 ms | max ms | CPU p50 ms | size KiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in result["pages"].items():
        print(f"| {label} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['cpu_p50_ms']}"
              f" | {r['kb']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
