"""Poison decisions (issue 19): a decision the read tables refuse after it was published is set
aside and answered with a `CommandRejected`, never a crash - in the live batch (pipelined or
not), in the catch-up after a crash, and in a replay, which ends with the same tables.

Validation at the boundary keeps such values out, so these tests put them PAST it, in process:
a decision is altered after `decide` with `model_copy` (which skips validation) to hold a value
Postgres really refuses (a NUL character in a jsonb key; a metric timestamp that is year 0 in
UTC), and `projection.card_row` is patched to write a number past an integer column for cards
tagged `poison=row` (an event every reader decodes, so the replay meets the same refusal). The
worker, the broker and Postgres are real; the sequencer runs in this process.

Last, declared facts against stored facts: a reference to content the space already stores must
declare the stored size (a real worker and API, as in test_artifacts.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import orjson
import pytest

from client import AsyncCardRegistry, RunCard
from registry_core.contracts.codec import decode_event, encode
from registry_core.domain.artifacts import ArtifactRef
from registry_core.domain.cards import RegistryType
from registry_core.domain.commands import RegisterCard, UpdateCard
from registry_core.domain.decider import INITIAL_STATE, Context, handle
from registry_core.domain.errors import InvalidArtifact
from registry_core.domain.events import CardRegistered, Event, uid_for_command
from registry_core.messaging import ensure_topics
from registry_core.persistence import db, projection
from registry_core.persistence.projection import LoggedEvent, claim_epoch, project
from registry_core.settings import Settings
from tests.conftest import Stack
from tests.integration.helpers import EVENTS, dumps, fetch, outcome, publish_raw, read_topic
from tests.support.wire import command
from workers.replay import replay
from workers.sequencer import isolation
from workers.sequencer.faults import Faults
from workers.sequencer.worker import Sequencer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
YEAR_ZERO = "0001-01-01T00:00:00+01:00"  # year 0 once in UTC: asyncpg's encoder overflows
TABLES = {
    "cards": "uid",
    "event_log": "event_offset",
    "command_outcomes": "command_id",
    "lineage": "uid, field, ref_uid",
    "run_metrics": "uid, seq",
    "artifacts": "registry, space, sha256, key",
}


# ---- the poison, past validation ------------------------------------------------------------


def _poisoned(event: Event, kind: str | None) -> Event:
    """`event` holding a value Postgres refuses (model_copy: no validation)."""
    if not isinstance(event, CardRegistered) or kind is None:
        return event
    card = event.card
    if kind == "nul-key":
        card = card.model_copy(update={"tags": {**card.tags, "a\x00b": "v"}})
    elif kind == "metric-ts":
        metric = {"name": "loss", "value": 1.0, "step": 1, "timestamp": YEAR_ZERO}
        card = card.model_copy(update={"attributes": {**card.attributes, "metrics": [metric]}})
    return event.model_copy(update={"card": card})


def _refuse_tagged_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cards tagged poison=row get a major part past the integer column (22003 in Postgres),
    in every projection of this process: live, catch-up and replay."""
    real = projection.card_row

    def card_row(event: CardRegistered, offset: int) -> dict[str, object]:
        row = real(event, offset)
        if event.card.tags.get("poison") == "row":
            row["major"] = 2**40
        return row

    monkeypatch.setattr(projection, "card_row", card_row)


class _Poison(Faults):
    """The worker's decisions for commands tagged poison=<kind> carry that poison (a
    registration's card has its command's tags)."""

    def decided(self, events: list[Event]) -> list[Event]:
        return [
            _poisoned(e, e.card.tags.get("poison")) if isinstance(e, CardRegistered) else e
            for e in events
        ]


def _poison_decisions(monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Poison for the decisions of a sequencer given the returned faults, and for the rows of
    cards tagged poison=row in every projection."""
    _refuse_tagged_rows(monkeypatch)
    return _Poison()


def _register(name: str, poison: str | None = None) -> RegisterCard:
    return RegisterCard(
        command_id=uuid4(),
        issued_at=NOW,
        registry=RegistryType.RUN,
        space="poison",
        name=name,
        card_type="RunCard",
        tags={"poison": poison} if poison else {},
        attributes=RunCard(space="poison", name=name).attributes(),
    )


def _decodes(event: Event) -> bool:
    try:
        decode_event(encode(event))
    except Exception:
        return False
    return True


# ---- the projection alone --------------------------------------------------------------------


async def _tables(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, key in TABLES.items():
        rows = await conn.fetch(f"SELECT t::text FROM {schema}.{table} AS t ORDER BY {key}")
        out[table] = [tuple(r) for r in rows]
    return out


async def test_project_sets_aside_what_the_tables_refuse_and_a_replay_agrees(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_tagged_rows(monkeypatch)
    cmds = [
        _register("a"),
        _register("b", "nul-key"),
        _register("c"),
        _register("d", "metric-ts"),
        _register("e", "row"),
        _register("f"),
    ]
    events = [
        _poisoned(handle(c, INITIAL_STATE, {}, Context(NOW, 1, i))[0], c.tags.get("poison"))
        for i, c in enumerate(cmds)
    ]
    live = [LoggedEvent(i, ev, True, encode(ev)) for i, ev in enumerate(events)]
    calls: list[list[projection.Unstorable]] = []
    answers: list[LoggedEvent] = []

    async def on_unstorable(found: list[projection.Unstorable]) -> list[LoggedEvent]:
        calls.append(found)
        for ev in isolation.answers(found, epoch=1, now=NOW):
            answers.append(LoggedEvent(len(live) + len(answers), ev, True, encode(ev)))
        return answers

    conn = await db.connect(database_url)
    try:
        await db.migrate(conn)
        await claim_epoch(conn, "sequencer")
        found = await project(
            conn, tracking_name="sequencer", epoch=1, events=live, command_offset=5,
            fresh_decisions=True, on_unstorable=on_unstorable,
        )  # fmt: skip
        poisoned = {cmds[i].command_id for i in (1, 3, 4)}
        assert len(calls) == 1  # once, with every offender of the batch
        assert {f.item.event.command_id for f in found} == poisoned
        assert all(f.decided and f.needs_answer for f in found)
        assert {a.event.command_id for a in answers} == poisoned
        cards = await conn.fetch("SELECT name, version FROM cards ORDER BY name")
        assert [(r["name"], r["version"]) for r in cards] == [
            ("a", "1.0.0"), ("c", "1.0.0"), ("f", "1.0.0"),
        ]  # fmt: skip
        outcomes = {
            r["command_id"]: (r["status"], r["error_code"], r["event_offset"])
            for r in await conn.fetch("SELECT * FROM command_outcomes")
        }
        assert len(outcomes) == 6
        for i, c in enumerate(cmds):
            if c.command_id in poisoned:
                status, code, offset = outcomes[c.command_id]
                assert (status, code) == ("rejected", "unstorable") and offset >= len(live)
            else:
                assert outcomes[c.command_id] == ("registered", None, i)
        reason = await conn.fetchval(
            "SELECT reason FROM command_outcomes WHERE command_id = $1", cmds[1].command_id
        )
        assert "cannot store" in reason and "\x00" not in reason
        archived = {
            r["event_offset"]: r["applied"]
            for r in await conn.fetch("SELECT event_offset, applied FROM event_log")
        }
        for i in range(len(live)):
            if cmds[i].command_id not in poisoned:
                assert archived[i] is True
            elif _decodes(events[i]):
                assert archived[i] is False  # in the archive, not applied
            else:
                assert i not in archived  # as catch-up and replay: they skip what they can't read
        assert all(archived[a.offset] for a in answers)
        tracking = await conn.fetchrow("SELECT * FROM tracking")
        assert tracking["event_offset"] == answers[-1].offset and tracking["command_offset"] == 5
        assert await conn.fetchval("SELECT count(*) FROM run_metrics") == 0

        # A replay of the same log (decoded events, no hook) ends with the same tables.
        await conn.execute("CREATE SCHEMA mirror")
        mirror = await db.connect(database_url, server_settings={"search_path": "mirror"})
        try:
            await db.migrate(mirror)
            await claim_epoch(mirror, "sequencer")
            log = [
                LoggedEvent(e.offset, decode_event(encode(e.event)), True)
                for e in [*live, *answers]
                if _decodes(e.event)
            ]
            again = await project(mirror, tracking_name="sequencer", epoch=None, events=log)
            assert {f.item.event.command_id for f in again} <= poisoned
            assert not any(f.needs_answer for f in again)  # the log answers them already
        finally:
            await mirror.close()
        ours, theirs = await _tables(conn, "public"), await _tables(conn, "mirror")
        assert ours == theirs
    finally:
        await conn.close()


async def test_a_lost_connection_or_a_version_collision_still_stops_the_projection(
    database_url: str,
) -> None:
    """Only the data is set aside: the unique key on versions, the last line of defence against
    a sequencing bug, still aborts the batch (and the worker)."""
    one, two = _register("same"), _register("same")
    ev1 = handle(one, INITIAL_STATE, {}, Context(NOW, 1, 0))[0]
    ev2 = handle(two, INITIAL_STATE, {}, Context(NOW, 1, 1))[0]  # 1.0.0 again: a "bug"
    conn = await db.connect(database_url)
    try:
        await db.migrate(conn)
        await claim_epoch(conn, "sequencer")
        with pytest.raises(asyncpg.UniqueViolationError):
            await project(
                conn, tracking_name="sequencer", epoch=1, fresh_decisions=True,
                events=[LoggedEvent(0, ev1, True), LoggedEvent(1, ev2, True)],
            )  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM cards") == 0
    finally:
        await conn.close()


# ---- the worker, in this process --------------------------------------------------------------


@pytest.fixture
def settings(
    database_url: str, kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    monkeypatch.setenv("OPSML_STORAGE_URI", str(tmp_path / "artifacts"))
    monkeypatch.setenv("OPSML_LOCK_RETRY_SECONDS", "0.1")

    def make(**extra: Any) -> Settings:
        return Settings(
            database_url=database_url,  # type: ignore[arg-type]
            kafka_bootstrap_servers=kafka,
            **extra,
        )

    return make


async def _topics(s: Settings) -> None:
    """One partition each, before the test publishes (the broker would make four)."""
    await ensure_topics(s.kafka_bootstrap_servers, [s.commands_topic, s.events_topic])


class Running:
    def __init__(self, seq: Sequencer, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.seq, self.task, self.stop = seq, task, stop

    async def close(self) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.task, 30)
        except Exception:
            pass


async def _start(s: Settings, faults: Faults | None = None) -> Running:
    seq = Sequencer(s, faults=faults)
    stop = asyncio.Event()
    task = asyncio.create_task(seq.run(stop))
    ready = asyncio.create_task(seq.ready.wait())
    await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    assert seq.ready.is_set(), "the sequencer did not become active"
    return Running(seq, task, stop)


@pytest.fixture
async def workers() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for w in started:
        await w.close()


async def _outcomes(dsn: str, ids: list[str], timeout: float = 30) -> dict[str, asyncpg.Record]:
    wanted = [UUID(i) for i in ids]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await fetch(dsn, "SELECT * FROM command_outcomes WHERE command_id = ANY($1)", wanted)
        if len(rows) == len(wanted) or asyncio.get_running_loop().time() > deadline:
            return {str(r["command_id"]): r for r in rows}
        await asyncio.sleep(0.05)


def _cmd(name: str, poison: str | None = None) -> dict[str, Any]:
    return command(space="poison", name=name, tags={"poison": poison} if poison else {})


async def _replay_identical(s: Settings) -> None:
    # Batch by batch: some poisons here come from a patched `card_row`, a seam the bulk COPY path
    # (its own row builder) does not pass through; tests/integration/test_replay_poison.py shows
    # the bulk path isolating real poison events.
    result = await replay(s, verify_only=True, bulk=False)
    assert result.identical, [d.describe() for d in result.diffs if not d.equal]


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "one-batch-at-a-time"])
async def test_an_offender_in_the_middle_of_a_batch_is_rejected_and_the_rest_registered(
    settings: Callable[..., Settings],
    workers: list[Running],
    monkeypatch: pytest.MonkeyPatch,
    pipeline: bool,
) -> None:
    poison = _poison_decisions(monkeypatch)
    s = settings(worker_pipeline=pipeline)
    batch = [
        _cmd("steady"),
        _cmd("nul", "nul-key"),
        _cmd("steady"),
        _cmd("ts", "metric-ts"),
        _cmd("row", "row"),
        _cmd("steady"),
    ]
    # all in the log before the worker starts: its first read takes them as one batch
    await _topics(s)
    await publish_raw(s.kafka_bootstrap_servers, *(dumps(c) for c in batch))
    workers.append(await _start(s, poison))
    ids = [c["command_id"] for c in batch]
    got = await _outcomes(s.dsn, ids)
    assert len(got) == len(batch)
    assert [got[c["command_id"]]["version"] for c in batch if c["name"] == "steady"] == [
        "1.0.0", "1.1.0", "1.2.0",
    ]  # fmt: skip
    for c in batch:
        row = got[c["command_id"]]
        if c["name"] == "steady":
            assert row["status"] == "registered"
        else:
            assert (row["status"], row["error_code"]) == ("rejected", "unstorable"), dict(row)
            assert "cannot store" in row["reason"]
    # each registered exactly once; nothing of the offenders in the read tables
    steady = {c["command_id"] for c in batch if c["name"] == "steady"}
    cards = await fetch(s.dsn, "SELECT name, command_id FROM cards")
    assert sorted(r["name"] for r in cards) == ["steady"] * 3
    assert {str(r["command_id"]) for r in cards} == steady
    assert (await fetch(s.dsn, "SELECT count(*) FROM run_metrics"))[0][0] == 0

    # the log: each offender's decision, then its rejection, behind the batch's events
    log = await read_topic(s.kafka_bootstrap_servers, EVENTS)
    last_of_batch = max(e["_offset"] for e in log if e.get("command_id") in steady)
    for c in batch:
        if c["name"] == "steady":
            continue
        mine = [e for e in log if e.get("command_id") == c["command_id"]]
        assert [e["type"] for e in mine] == ["card_registered", "command_rejected"]
        assert mine[1]["event_id"] != mine[0]["event_id"]
        assert mine[0]["_offset"] < last_of_batch < mine[1]["_offset"]

    # the worker carries on; the names whose decision was refused start again at 1.0.0 (the
    # state cache gave the version back), the steady name goes on
    assert not workers[0].task.done()
    more = [_cmd("nul"), _cmd("row"), _cmd("steady")]
    await publish_raw(s.kafka_bootstrap_servers, *(dumps(c) for c in more))
    after = await _outcomes(s.dsn, [c["command_id"] for c in more])
    assert [after[c["command_id"]]["version"] for c in more] == ["1.0.0", "1.0.0", "1.3.0"]
    await _replay_identical(s)


async def test_an_offender_published_before_a_crash_is_answered_by_the_catch_up(
    settings: Callable[..., Settings], workers: list[Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker publishes a batch with poison and dies before projecting it (simulated: its
    projection never starts). The next sequencer's catch-up sets the poison aside, publishes
    the rejections behind its marker, projects them, and the registry carries on."""

    class Crash(_Poison):
        def after_publish(self) -> None:
            raise RuntimeError("simulated crash after publishing, before projecting")

    poison = _poison_decisions(monkeypatch)
    s = settings()
    first = await _start(s, Crash())
    workers.append(first)
    batch = [_cmd("steady"), _cmd("nul", "nul-key"), _cmd("row", "row"), _cmd("steady")]
    await publish_raw(s.kafka_bootstrap_servers, *(dumps(c) for c in batch))
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(first.task, 30)
    assert (await fetch(s.dsn, "SELECT count(*) FROM command_outcomes"))[0][0] == 0

    # a decision of that worker that no reader can decode, as a broken predecessor might leave
    unreadable_id = str(uuid4())
    epoch = (await fetch(s.dsn, "SELECT claimed_epoch FROM tracking"))[0][0]
    producer_value = orjson.dumps(
        {"type": "card_registered", "schema_version": 1, "event_id": str(uuid4()),
         "command_id": unreadable_id, "occurred_at": NOW.isoformat(), "epoch": epoch,
         "command_offset": None, "card": {"not": "a card"}}
    )  # fmt: skip
    await _publish_event(s.kafka_bootstrap_servers, producer_value)

    workers.append(await _start(s, poison))  # epoch 2: catch-up
    ids = [c["command_id"] for c in batch] + [unreadable_id]
    got = await _outcomes(s.dsn, ids)
    assert len(got) == len(ids)
    assert [got[c["command_id"]]["version"] for c in batch if c["name"] == "steady"] == [
        "1.0.0", "1.1.0",
    ]  # fmt: skip
    for cid in [batch[1]["command_id"], batch[2]["command_id"], unreadable_id]:
        assert (got[cid]["status"], got[cid]["error_code"]) == ("rejected", "unstorable")
    log = await read_topic(s.kafka_bootstrap_servers, EVENTS)
    marker = max(e["_offset"] for e in log if e.get("type") == "sequencer_started")
    answers = [e for e in log if e.get("error_code") == "unstorable"]
    assert len(answers) == 3 and all(e["_offset"] > marker for e in answers)

    more = [_cmd("nul"), _cmd("steady")]
    await publish_raw(s.kafka_bootstrap_servers, *(dumps(c) for c in more))
    after = await _outcomes(s.dsn, [c["command_id"] for c in more])
    assert [after[c["command_id"]]["version"] for c in more] == ["1.0.0", "1.2.0"]
    assert not workers[1].task.done()
    await _replay_identical(s)


async def test_a_change_to_a_card_whose_registration_was_set_aside_is_not_reported_done(
    settings: Callable[..., Settings], workers: list[Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update of a card, and a lineage reference to it, in the same batch as its
    registration: when the tables refuse that registration, the update must not be answered
    "updated" (nor the reference stored) for a card that does not exist."""
    _refuse_tagged_rows(monkeypatch)
    s = settings()
    data = RegisterCard(
        command_id=uuid4(), issued_at=NOW, registry=RegistryType.DATA, space="poison",
        name="ghost-data", card_type="DataCard", tags={"poison": "row"},
    )  # fmt: skip
    ghost = _register("ghost", "row")
    update = UpdateCard(
        command_id=uuid4(), issued_at=NOW, registry=RegistryType.RUN, space="poison",
        name="ghost", uid=uid_for_command(ghost.command_id), description="changed",
    )  # fmt: skip
    user = _register("user").model_copy(
        update={"attributes": {"datacard_uids": [str(uid_for_command(data.command_id))]}}
    )
    batch = [data, ghost, update, user]
    await _topics(s)
    await publish_raw(s.kafka_bootstrap_servers, *(encode(c) for c in batch))
    workers.append(await _start(s))
    got = await _outcomes(s.dsn, [str(c.command_id) for c in batch])
    status = {c.command_id: (got[str(c.command_id)]["status"],
                             got[str(c.command_id)]["error_code"]) for c in batch}  # fmt: skip
    assert status[data.command_id] == ("rejected", "unstorable")
    assert status[ghost.command_id] == ("rejected", "unstorable")
    assert status[update.command_id] == ("rejected", "card_not_found")
    assert status[user.command_id] == ("rejected", "unknown_reference")
    assert (await fetch(s.dsn, "SELECT count(*) FROM cards"))[0][0] == 0
    assert (await fetch(s.dsn, "SELECT count(*) FROM lineage"))[0][0] == 0
    await _replay_identical(s)


async def _publish_event(bootstrap: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(EVENTS, value, partition=0)
    finally:
        await producer.stop()


# ---- declared facts against stored facts ---------------------------------------------------------


async def test_a_reference_to_stored_content_must_declare_its_stored_size(
    stack: Stack, tmp_path: Path
) -> None:
    """De-duplication: a command may point at content the space already stores (by sha256)
    instead of uploading it. Its declared size must be the stored one: size 1 for a 30,000-byte
    file was registered, and every download of it then failed; 2**63 stopped the worker (the
    artifacts table's bigint)."""
    body = os.urandom(30_000)
    sha = hashlib.sha256(body).hexdigest()
    (tmp_path / "weights.bin").write_bytes(body)
    run = RunCard(space="dedup", name="n")
    run.log_artifact(str(tmp_path / "weights.bin"))
    async with AsyncCardRegistry("run", tracking_uri=stack.url) as reg:
        first = await reg.register_card(run)
        assert [(a.sha256, a.size) for a in first.artifacts] == [(sha, 30_000)]

        lying = reg._command_for(
            RunCard(space="dedup", name="n"), "minor", None,
            artifacts=[ArtifactRef(path="weights.bin", sha256=sha, size=1)],
        )  # fmt: skip
        with pytest.raises(InvalidArtifact, match=r"as 30000 bytes, the command declares 1"):
            await reg._execute(lying)

        huge = command(
            space="dedup", name="n",
            artifacts=[{"path": "weights.bin", "sha256": sha, "size": 2**63}],
        )  # fmt: skip
        await publish_raw(stack.bootstrap, dumps(huge))
        resp = await outcome(stack.url, huge["command_id"])
        got = resp.json()
        assert got["status"] == "rejected", got
        # refused by the schema (a size past bigint) or by the comparison with the stored file
        assert got["error_code"] in ("invalid_command", "invalid_artifact"), got
        assert stack.workers[0].poll() is None

        honest = reg._command_for(
            RunCard(space="dedup", name="n"), "minor", None,
            artifacts=[ArtifactRef(path="weights.bin", sha256=sha, size=30_000)],
        )  # fmt: skip
        done = await reg._execute(honest)
        assert done.version == "1.1.0"  # the rejections took no version
        loaded = await reg.load_card(uid=done.uid)
        paths = await loaded.download_artifacts(str(tmp_path / "out"))
        assert [Path(p).read_bytes() for p in paths] == [body]
    sizes = await fetch(stack.database_url, "SELECT DISTINCT size FROM artifacts")
    assert [r[0] for r in sizes] == [30_000]
