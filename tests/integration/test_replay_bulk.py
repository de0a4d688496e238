"""The replay's bulk path (workers/replay/bulk.py) builds exactly the tables the live projection
builds from the same log, including the cases it hands to `project()` (updates, deletes and the
metrics/lineage they rewrite, non-canonical payloads) and the projection's rules (fenced epochs,
a decision repeated in the log, undecodable records, duplicate lineage references, artifacts of
deleted cards)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from client import AsyncCardRegistry, RunCard
from registry_core.contracts.codec import encode
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.events import (
    CardDeleted,
    CardRegistered,
    CardUpdated,
    CommandRejected,
    SequencerStarted,
    event_id_for,
    uid_for_command,
)
from registry_core.persistence import db
from registry_core.persistence.projection import claim_epoch
from tests.conftest import Stack
from workers.replay import ReplayStats
from workers.replay.bulk import bulk_load, bulk_supported
from workers.replay.compare import compare, compare_table
from workers.replay.rebuild import project_batches
from workers.replay.schemas import connect_in, create_rebuild_schema

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 1, 0, 0, tzinfo=UTC)
SHA = "ab" * 32


def _ts(i: int) -> datetime:
    return T0 + timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000)


def _card(cid: uuid.UUID, registry: str, name: str, version: str, i: int, **kw: Any) -> CardRecord:
    card_type = {"data": "DataCard", "model": "ModelCard", "run": "RunCard"}[registry]
    return CardRecord(
        uid=uid_for_command(cid), registry=RegistryType(registry), space="demo", name=name,
        version=version, card_type=card_type, created_at=_ts(i), command_id=cid, actor="ds", **kw,
    )  # fmt: skip


def build_log() -> list[bytes | None]:
    """A log with every kind of event and every rule of the projection."""
    log: list[bytes | None] = []

    def add(ev: Any) -> bytes:
        raw = encode(ev)
        log.append(raw)
        return raw

    def marker(epoch: int) -> None:
        cid = uuid.uuid5(uuid.NAMESPACE_URL, f"epoch{epoch}")
        add(SequencerStarted(event_id=event_id_for(cid, epoch), command_id=cid,
                             occurred_at=_ts(len(log)), epoch=epoch))  # fmt: skip

    def register(card: CardRecord, epoch: int = 1) -> bytes:
        return add(CardRegistered(
            event_id=event_id_for(card.command_id, epoch), command_id=card.command_id,
            occurred_at=_ts(len(log)), epoch=epoch, command_offset=len(log), card=card,
        ))  # fmt: skip

    marker(1)
    data_cid = uuid.uuid4()
    data = _card(data_cid, "data", "sales", "1.0.0", 1, tags={"k": "v"},
                 attributes={"row_count": 3, "data_splits": []})  # fmt: skip
    register(data)
    # lineage, with the same reference twice (ON CONFLICT DO NOTHING in the live projection)
    model = _card(
        uuid.uuid4(),
        "model",
        "churn",
        "1.0.0",
        2,
        attributes={"datacard_uid": str(data.uid)},
        metadata={"f": 0.1, "n": [1, 2]},
    )
    register(model)
    run_cid = uuid.uuid4()
    metrics = [
        {"name": "loss", "value": 0.5, "step": 1, "timestamp": "2026-11-24T01:00:00Z"},
        {"name": "loss", "value": 0.25, "step": 2, "timestamp": None},
    ]
    run = _card(run_cid, "run", "exp", "1.0.0", 3, attributes={
        "parameters": {"lr": 0.1}, "metrics": metrics,
        "datacard_uids": [str(data.uid), str(data.uid)], "modelcard_uids": [str(model.uid)],
    })  # fmt: skip
    register(run)
    # artifacts: registered, then the card is deleted (its artifact rows go)
    art = [{"path": "model.bin", "sha256": SHA, "size": 10, "media_type": None}]
    doomed = _card(uuid.uuid4(), "model", "churn", "1.1.0", 4, artifacts=art)
    register(doomed)
    kept = _card(uuid.uuid4(), "model", "other", "2.0.0-rc.1+b7", 5, artifacts=art)
    register(kept)
    # a producer retry: the same decision twice; the second copy is archived, not applied
    dup_raw = register(_card(uuid.uuid4(), "run", "exp", "1.1.0", 6))
    log.append(dup_raw)
    # a rejection, with and without a name
    for name in ("Bad Name", None):
        cid = uuid.uuid4()
        add(CommandRejected(event_id=event_id_for(cid, 1), command_id=cid, occurred_at=_ts(9),
                            epoch=1, command_offset=len(log), error_code="invalid_name",
                            reason="no", registry=RegistryType.RUN if name else None,
                            space="demo" if name else None, name=name))  # fmt: skip
    # an update of the run: tags, metrics and lineage rewritten
    upd_cid = uuid.uuid4()
    new_run = run.model_copy(update={
        "tags": {"stage": "prod"}, "description": "promoted", "updated_at": _ts(20),
        "attributes": {**run.attributes, "metrics": metrics[:1], "datacard_uids": []},
    })  # fmt: skip
    add(CardUpdated(event_id=event_id_for(upd_cid, 1), command_id=upd_cid, occurred_at=_ts(20),
                    epoch=1, command_offset=len(log), card=new_run,
                    changed=["tags", "description", "attributes"]))  # fmt: skip
    del_cid = uuid.uuid4()
    add(
        CardDeleted(
            event_id=event_id_for(del_cid, 1),
            command_id=del_cid,
            occurred_at=_ts(21),
            epoch=1,
            command_offset=len(log),
            card=doomed.model_copy(update={"status": "deleted", "updated_at": _ts(21)}),
        )
    )
    # a valid event in a non-canonical form (key order, spacing, "+00:00"): the slow path
    odd = _card(uuid.uuid4(), "data", "sales", "1.1.0", 22)
    raw = orjson.loads(register(odd))
    log.pop()
    raw["card"]["created_at"] = raw["card"]["created_at"].replace("Z", "+00:00")
    log.append(orjson.dumps(dict(reversed(list(raw.items())))))
    # hand-written attributes the sequencer would have refused: a metric that is not a number,
    # one that is not an object, lineage references that are not uuids. The cards are kept; the
    # bad entries get no metric or lineage row, on both paths (and the replay does not fail).
    register(_card(uuid.uuid4(), "run", "odd-run", "1.0.0", 24, attributes={
        "metrics": [{"name": "acc", "value": 0.9, "step": 0, "timestamp": None},
                    {"name": "acc", "value": "abc"}, "not a metric",
                    {"name": "acc", "value": 1.0, "step": -1}],
        "datacard_uids": [str(data.uid), "nope"],
    }))  # fmt: skip
    register(_card(uuid.uuid4(), "model", "odd-model", "1.0.0", 25,
                   attributes={"datacard_uid": "not-a-uuid"}))  # fmt: skip
    # garbage, an empty record, an event of a newer schema version
    log.append(b"\xff not json")
    log.append(None)
    newer = orjson.loads(register(_card(uuid.uuid4(), "data", "sales", "9.0.0", 23)))
    log[-1] = orjson.dumps({**newer, "schema_version": 99})
    # a new sequencer, then its fenced-off predecessor keeps publishing
    marker(2)
    register(_card(uuid.uuid4(), "run", "exp", "1.2.0", 30), epoch=1)
    register(_card(uuid.uuid4(), "run", "exp", "1.3.0", 31), epoch=2)
    # many plain registrations (the fast path), several batches
    for i in range(500):
        register(
            _card(
                uuid.uuid4(),
                "run",
                f"bulk{i % 7}",
                f"1.{i // 7}.0",
                40 + i,
                tags={"i": str(i)},
                attributes={"parameters": {"i": i}},
            ),
            epoch=2,
        )
    return log


async def _batches(log: list[bytes | None], size: int) -> AsyncIterator[list[tuple[int, Any]]]:
    for i in range(0, len(log), size):
        yield [(i + j, p) for j, p in enumerate(log[i : i + size])]


async def test_bulk_path_builds_the_same_tables_as_the_live_projection(database_url: str) -> None:
    log = build_log()
    live = await db.connect(database_url)
    try:
        await create_rebuild_schema(database_url, live, "opsml_rebuild_1")
        await create_rebuild_schema(database_url, live, "opsml_rebuild_2")
        reference = await connect_in(database_url, "opsml_rebuild_1")
        await claim_epoch(reference, "sequencer")
        ref_stats = ReplayStats()
        await project_batches(
            reference, _batches(log, 100), tracking_name="sequencer", stats=ref_stats
        )
        await reference.close()

        bulk = await connect_in(database_url, "opsml_rebuild_2")
        tracking = await claim_epoch(bulk, "sequencer")
        assert await bulk_supported(bulk, "opsml_rebuild_2")
        await bulk.close()
        stats = ReplayStats()
        state = await bulk_load(
            database_url, "opsml_rebuild_2", _batches(log, 100), tracking_name="sequencer",
            max_epoch=tracking.max_epoch, stats=stats, connect=connect_in,
        )  # fmt: skip
        # updates, the delete and the non-canonical payload went through project()
        assert len(state.deferred) == 3
        assert state.fast > 500
        for field in ("events", "applied", "fenced", "undecodable"):
            assert getattr(stats, field) == getattr(ref_stats, field), field
        assert (stats.fenced, stats.undecodable) == (1, 3)  # garbage, None, v99

        diffs = await compare(live, "opsml_rebuild_1", "opsml_rebuild_2")
        assert [d.table for d in diffs] == [
            "alias_history", "aliases", "artifacts", "card_changes", "cards", "command_outcomes",
            "event_log", "lineage", "run_metrics",
        ]  # fmt: skip
        assert all(d.equal for d in diffs), [d.describe() for d in diffs if not d.equal]
        counts = {d.table: d.live_rows for d in diffs}
        assert counts["artifacts"] == 1 and counts["run_metrics"] == 2  # exp's, odd-run's good one
        # model -> data, run -> model (run -> data was removed), odd-run -> data
        assert counts["lineage"] == 3
        odd_cards = "SELECT count(*) FROM opsml_rebuild_2.cards WHERE name LIKE 'odd-%'"
        assert await live.fetchval(odd_cards) == 2  # both cards with bad attributes are kept
        # the same tracking, and the same indexes and constraints by name and definition
        q = "SELECT command_offset, event_offset, max_epoch FROM {}.tracking"
        assert await live.fetch(q.format("opsml_rebuild_1")) == await live.fetch(
            q.format("opsml_rebuild_2")
        )
        q = (
            "SELECT tablename, indexname, replace(indexdef, schemaname || '.', '') AS d"
            " FROM pg_indexes WHERE schemaname = $1 ORDER BY 1, 2"
        )
        ref_idx = [tuple(r) for r in await live.fetch(q, "opsml_rebuild_1")]
        assert ref_idx == [tuple(r) for r in await live.fetch(q, "opsml_rebuild_2")]
        assert len(ref_idx) >= 15
        # and the same constraints: primary keys come back as primary keys (not as unique)
        q = (
            "SELECT c.relname, k.conname, k.contype::text FROM pg_constraint k JOIN pg_class c"
            " ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 ORDER BY 1, 2"
        )
        ref_cons = [tuple(r) for r in await live.fetch(q, "opsml_rebuild_1")]
        assert ref_cons == [tuple(r) for r in await live.fetch(q, "opsml_rebuild_2")]
        assert ("event_log", "event_log_pkey", "p") in ref_cons
    finally:
        await live.close()


async def test_a_constraint_violation_in_the_log_fails_the_bulk_load(database_url: str) -> None:
    """Two registrations of one version (which the live projection refuses row by row) are
    refused when the unique constraint is rebuilt after the load."""
    log: list[bytes | None] = []
    for i in range(2):
        card = _card(uuid.uuid4(), "run", "exp", "1.0.0", i)
        log.append(encode(CardRegistered(
            event_id=event_id_for(card.command_id, 1), command_id=card.command_id,
            occurred_at=_ts(i), epoch=1, command_offset=i, card=card,
        )))  # fmt: skip
    live = await db.connect(database_url)
    try:
        await create_rebuild_schema(database_url, live, "opsml_rebuild_1")
        conn = await connect_in(database_url, "opsml_rebuild_1")
        await claim_epoch(conn, "sequencer")
        await conn.close()
        with pytest.raises(asyncpg.UniqueViolationError):
            await bulk_load(
                database_url, "opsml_rebuild_1", _batches(log, 10), tracking_name="sequencer",
                max_epoch=0, stats=ReplayStats(), connect=connect_in,
            )  # fmt: skip
    finally:
        await live.close()


async def test_cli_replay_no_bulk_uses_the_projection_path(stack: Stack) -> None:
    """`opsml replay --no-bulk` rebuilds through the live projection, batch by batch; both paths
    verify identical against the live tables."""
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as run:
        for i in range(5):
            await run.register_card(RunCard(space="demo", name=f"cli{i % 2}", tags={"i": str(i)}))
    for flags, path in ((["--no-bulk"], "bulk=False"), ([], "bulk=True")):
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "workers.cli", "replay", "--verify-only", *flags],
            env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "identical" in proc.stdout and "DIFFERENT" not in proc.stdout, output
        assert path in output, output


async def test_the_archive_compares_as_json_values_not_texts(database_url: str) -> None:
    """event_log.payload is `json` (migration 0005): texts of the same JSON value (key order,
    spacing, another encoder) compare equal, and a different value is reported with the row."""
    log = build_log()[:4]
    live = await db.connect(database_url)
    try:
        for schema in ("opsml_rebuild_1", "opsml_rebuild_2"):
            await create_rebuild_schema(database_url, live, schema)
            conn = await connect_in(database_url, schema)
            await claim_epoch(conn, "sequencer")
            await project_batches(
                conn, _batches(log, 10), tracking_name="sequencer", stats=ReplayStats()
            )
            await conn.close()
        kind = await live.fetchval(
            "SELECT data_type FROM information_schema.columns WHERE table_schema ="
            " 'opsml_rebuild_1' AND table_name = 'event_log' AND column_name = 'payload'"
        )
        assert kind == "json"
        diff = await compare_table(live, "opsml_rebuild_1", "opsml_rebuild_2", "event_log")
        assert diff.equal and diff.live_rows == 4

        # the same value in another text: keys reversed, indented
        raw = orjson.loads(log[1] or b"")
        other = orjson.dumps(dict(reversed(list(raw.items()))), option=orjson.OPT_INDENT_2)
        set_payload = (
            "UPDATE opsml_rebuild_2.event_log SET payload = $1::json WHERE event_offset = 1"
        )
        await live.execute(set_payload, other.decode())
        assert await live.fetchval(
            "SELECT a.payload::text <> b.payload::text FROM opsml_rebuild_1.event_log a"
            " JOIN opsml_rebuild_2.event_log b USING (event_offset) WHERE event_offset = 1"
        )
        diff = await compare_table(live, "opsml_rebuild_1", "opsml_rebuild_2", "event_log")
        assert diff.equal, diff.describe()

        # another value
        raw["card"]["description"] = "edited"
        await live.execute(set_payload, orjson.dumps(raw).decode())
        diff = await compare_table(live, "opsml_rebuild_1", "opsml_rebuild_2", "event_log")
        assert not diff.equal and (diff.only_live, diff.only_rebuild) == (1, 1)
        assert diff.sample_rebuild[0]["payload"]["card"]["description"] == "edited"
        assert "event_log: DIFFERENT" in diff.describe()
    finally:
        await live.close()
