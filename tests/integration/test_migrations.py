"""Migrations: forward-only, idempotent, and they give the canonical schema."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from registry_core.persistence import db, tables

pytestmark = pytest.mark.integration

CANONICAL = {
    "cards": {"uid", "registry", "space", "name", "version", "major", "minor", "patch", "pre_key",
              "card_type", "tags", "description", "metadata", "attributes", "status",
              "created_at", "updated_at", "command_id", "actor", "event_offset", "artifacts"},
    "event_log": {"event_offset", "event_id", "event_type", "command_id", "epoch",
                  "schema_version", "applied", "occurred_at", "payload"},
    "command_outcomes": {"command_id", "status", "uid", "version", "error_code", "reason",
                         "registry", "space", "name", "command_offset", "event_offset",
                         "decided_at"},
    "tracking": {"name", "command_offset", "event_offset", "max_epoch", "claimed_epoch",
                 "updated_at"},
    "schema_migrations": {"version", "name", "applied_at"},
    "lineage": {"uid", "ref_uid", "field"},
    "run_metrics": {"uid", "seq", "name", "step", "value", "logged_at"},
    "artifacts": {"registry", "space", "sha256", "key", "size", "uid"},
    "aliases": {"registry", "space", "name", "alias", "uid", "version", "actor", "set_at",
                "event_offset"},
    "alias_history": {"event_offset", "registry", "space", "name", "alias", "action", "uid",
                      "version", "previous_version", "actor", "occurred_at"},
    "card_changes": {"uid", "event_offset"},
}  # fmt: skip


async def test_migrations_apply_once_and_give_the_canonical_schema(database_url: str) -> None:
    conns = [await db.connect(database_url) for _ in range(3)]
    try:
        # three processes migrating at once: exactly one applies each file
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
        assert sorted(results, key=len) == [[], [], [v for v, _, _ in db.migration_files()]]
        rows = await conns[0].fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        schema: dict[str, set[str]] = {}
        for r in rows:
            schema.setdefault(r["table_name"], set()).add(r["column_name"])
        assert schema == CANONICAL
        # the column lists the projection and the bulk replay import are the migrated ones
        read_tables = {t: c for t, c in schema.items() if t not in tables.OPERATIONAL}
        assert tables.read_table_columns() == read_tables
        assert set(schema) - set(read_tables) == set(tables.OPERATIONAL)
        indexes = {
            r["indexname"]
            for r in await conns[0].fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'cards'"
            )
        }
        assert {"cards_version_unique", "cards_precedence", "cards_command_unique"} <= indexes
        # the last line of defence holds even against a buggy writer
        insert = (
            "INSERT INTO cards (uid, registry, space, name, version, major, minor, patch, pre_key,"
            " card_type, created_at, command_id, event_offset) VALUES (gen_random_uuid(), 'run',"
            " 's', 'n', '1.0.0', 1, 0, 0, '~', 'RunCard', now(), gen_random_uuid(), $1)"
        )
        await conns[0].execute(insert, 1)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conns[0].execute(insert, 2)
    finally:
        for c in conns:
            await c.close()
