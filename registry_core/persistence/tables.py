"""Persistence: the read tables' columns, defined once.

The order is the order the projection builds a table's rows in (and the bulk replay COPYs them
in); the migrations create the same columns (tests/integration/test_migrations.py checks both
against the migrated schema). A migration that adds a column adds it here, and the replay's bulk
path, which knows exactly these shapes, steps aside until it learns the new one.
"""

from __future__ import annotations

EVENT_LOG = ("event_offset", "event_id", "event_type", "command_id", "epoch", "schema_version",
             "applied", "occurred_at", "payload")  # fmt: skip
CARDS = ("uid", "registry", "space", "name", "version", "major", "minor", "patch", "pre_key",
         "card_type", "tags", "description", "metadata", "attributes", "status", "created_at",
         "command_id", "actor", "event_offset", "artifacts")  # fmt: skip
COMMAND_OUTCOMES = ("command_id", "status", "uid", "version", "error_code", "reason", "registry",
                    "space", "name", "command_offset", "event_offset", "decided_at")  # fmt: skip
LINEAGE = ("uid", "ref_uid", "field")
RUN_METRICS = ("uid", "seq", "name", "step", "value", "logged_at")
ARTIFACTS = ("registry", "space", "sha256", "key", "size", "uid")

# Every read table, with the columns a registration (or rejection) inserts.
INSERTED: dict[str, tuple[str, ...]] = {
    "event_log": EVENT_LOG,
    "cards": CARDS,
    "command_outcomes": COMMAND_OUTCOMES,
    "lineage": LINEAGE,
    "run_metrics": RUN_METRICS,
    "artifacts": ARTIFACTS,
}
# Read tables only the projection's `project()` writes (from updates, deletes and alias events:
# the replay's bulk path defers those events to it, so it copies no rows into these).
ALIASES = ("registry", "space", "name", "alias", "uid", "version", "actor", "set_at",
           "event_offset")  # fmt: skip
ALIAS_HISTORY = ("event_offset", "registry", "space", "name", "alias", "action", "uid", "version",
                 "previous_version", "actor", "occurred_at")  # fmt: skip
CARD_CHANGES = ("uid", "event_offset")
PROJECTED: dict[str, tuple[str, ...]] = {
    "aliases": ALIASES,
    "alias_history": ALIAS_HISTORY,
    "card_changes": CARD_CHANGES,
}
# Columns of a read table that no insert writes (an update or delete sets them).
NOT_INSERTED: dict[str, tuple[str, ...]] = {"cards": ("updated_at",)}
# Tables of process state, not derived from the events: a replay neither rebuilds nor compares
# them as read tables.
OPERATIONAL = ("tracking", "schema_migrations")

# A card as the API reads it (the version's sort parts stay inside the database).
CARD_READ = ("uid", "registry", "space", "name", "version", "card_type", "tags", "description",
             "metadata", "attributes", "artifacts", "status", "created_at", "updated_at",
             "command_id", "actor", "event_offset")  # fmt: skip


def read_table_columns() -> dict[str, set[str]]:
    """Every column of every read table, as the migrations create them."""
    out = {t: set(cols) | set(NOT_INSERTED.get(t, ())) for t, cols in INSERTED.items()}
    return out | {t: set(cols) for t, cols in PROJECTED.items()}
