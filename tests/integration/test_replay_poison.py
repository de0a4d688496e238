"""Bulk replay of a log holding an event the read tables refuse (issue 19): the default path of
`opsml replay` (COPY into index-free tables) has no per-event isolation, and used to fail with
the database's refusal (UntranslatableCharacterError for a NUL in a jsonb key). It now starts
again batch by batch on a fresh schema, setting the event aside as the live worker did, and ends
identical to the live tables - from the log and from the archive, verifying and switching.

The poisons are the real refusals of test_poison_isolation.py (a NUL in a tag key, a metric
timestamp that is year 0 in UTC), put past the boundary in the worker's decisions; its helpers
and fixtures are reused from there.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from registry_core.settings import Settings
from tests.integration.helpers import dumps, fetch, publish_raw
from tests.integration.test_poison_isolation import (
    Running,
    _cmd,
    _outcomes,
    _Poison,
    _start,
    _topics,
    settings,
    workers,
)
from workers.replay import replay

pytestmark = pytest.mark.integration

__all__ = ["settings", "workers"]  # (fixtures, used by name)


@pytest.mark.parametrize("source", ["kafka", "archive"])
async def test_a_bulk_replay_sets_aside_what_the_tables_refuse_and_ends_identical(
    settings: Callable[..., Settings], workers: list[Running], source: str
) -> None:
    s = settings()
    batch = [_cmd("steady"), _cmd("nul", "nul-key"), _cmd("steady"), _cmd("ts", "metric-ts")]
    await _topics(s)
    await publish_raw(s.kafka_bootstrap_servers, *(dumps(c) for c in batch))
    workers.append(await _start(s, _Poison()))
    got = await _outcomes(s.dsn, [c["command_id"] for c in batch])
    assert [got[c["command_id"]]["status"] for c in batch] == [
        "registered", "rejected", "registered", "rejected",
    ]  # fmt: skip
    await workers.pop().close()  # (a worker would go on projecting; the replay need not wait)

    verified = await replay(s, source=source, verify_only=True)  # type: ignore[arg-type]
    assert verified.identical, [d.describe() for d in verified.diffs if not d.equal]
    assert {d.table for d in verified.diffs} >= {"cards", "event_log", "command_outcomes"}
    # every event was read again, batch by batch (not the count of a half-done bulk load)
    log_end = int((await fetch(s.dsn, "SELECT max(event_offset) FROM event_log"))[0][0])
    assert verified.stats.events == log_end + 1

    switched = await replay(s, source=source)  # type: ignore[arg-type]
    assert switched.switched and switched.identical
    cards = await fetch(s.dsn, "SELECT name, version FROM cards ORDER BY version")
    assert [(r["name"], r["version"]) for r in cards] == [
        ("steady", "1.0.0"), ("steady", "1.1.0"),
    ]  # fmt: skip
    set_aside = await fetch(
        s.dsn, "SELECT count(*) FROM event_log WHERE NOT applied AND event_type = $1",
        "card_registered",
    )  # fmt: skip
    assert set_aside[0][0] >= 1  # archived, not applied: as the live projection set it aside
    await fetch(s.dsn, f"DROP SCHEMA {switched.old_schema} CASCADE")
