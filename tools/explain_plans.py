"""Print the Postgres plans of the read API's queries on a seeded throw-away database.

    .venv/bin/python tools/explain_plans.py [--cards 200000]

Seeds `cards` directly with SQL (1,000 names x N/1000 versions, a few pre-releases), then runs
EXPLAIN (ANALYZE, BUFFERS) on the SQL that registry_core/persistence/read.py generates for
each filter. Used for the plans quoted in docs/registry.md.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import asyncpg

from registry_core.persistence import db, read

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Explainer:
    """Stands in for a connection: captures the SQL list_cards builds and explains it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows = await self.conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, *args
        )
        self.plans.append("\n".join(r[0] for r in rows))
        return []


async def main(n: int) -> None:
    name = f"opsml_explain_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await db.connect(ADMIN.rsplit("/", 1)[0] + f"/{name}")
        await db.migrate(conn)
        per = max(1, n // 1000)
        await conn.execute(
            """
            INSERT INTO cards (uid, registry, space, name, version, major, minor, patch, pre_key,
                               card_type, tags, created_at, command_id, event_offset)
            SELECT gen_random_uuid(), 'model', 'space', 'name-' || (i % 1000),
                   '1.' || (i / 1000) || '.0', 1, i / 1000, 0, '~', 'ModelCard',
                   jsonb_build_object('stage', CASE WHEN i % 97 = 0 THEN 'prod' ELSE 'dev' END),
                   now() - (i || ' seconds')::interval, gen_random_uuid(), i
            FROM generate_series(0, $1 - 1) AS i
            """,
            per * 1000,
        )
        await conn.execute("ANALYZE cards")
        queries = {
            "latest version of a name": read.CardFilter(
                registry="model", space="space", name="name-7", limit=1
            ),
            "latest matching ^1.2 of a name": read.CardFilter(
                registry="model", space="space", name="name-7", version="^1.2.0", limit=1
            ),
            "exact version": read.CardFilter(
                registry="model", space="space", name="name-7", version="1.5.0"
            ),
            "a name's 100 newest by time": read.CardFilter(
                registry="model", space="space", name="name-7", sort_by_timestamp=True
            ),
            "by tag": read.CardFilter(registry="model", tags={"stage": "prod"}, limit=10),
            "by uid": read.CardFilter(uid=uuid.uuid4()),
        }
        ex = Explainer(conn)
        for title, f in queries.items():
            await read.list_cards(ex, f)  # type: ignore[arg-type]
            print(f"### {title}\n```\n{ex.plans[-1]}\n```\n")
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cards", type=int, default=200_000)
    asyncio.run(main(p.parse_args().cards))
