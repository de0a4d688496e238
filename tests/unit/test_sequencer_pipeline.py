"""The worker decides a batch while the previous one is being projected, and never publishes it
before that projection committed; a batch that needs card records or artifacts waits for it; a
command that points at a card registered earlier in its batch waits for that registration's
commit; the state cache never forgets a batch's names.

Fakes stand in for Postgres and Kafka: the lock-holding connection refuses a second statement
while one runs (as asyncpg does), and its projection waits on a gate the test opens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from aiokafka import ConsumerRecord
from aiokafka.producer.message_accumulator import BatchBuilder

from registry_core.contracts.codec import decode_event, encode
from registry_core.domain.cards import RegistryType, RunCard
from registry_core.domain.commands import AnyCommand, RegisterCard, UpdateCard
from registry_core.domain.events import (
    CardRegistered,
    CardUpdated,
    CommandRejected,
    uid_for_command,
)
from registry_core.persistence.db import Q
from registry_core.settings import Settings
from registry_core.storage import open_store
from workers.sequencer.artifacts import Artifacts
from workers.sequencer.faults import Faults
from workers.sequencer.pipeline import BatchPipeline
from workers.sequencer.publishing import Publisher
from workers.sequencer.state_cache import StateCache

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class _Db:
    """What is committed, and the order things happened in."""

    def __init__(self) -> None:
        self.outcomes: set[UUID] = set()
        self.log: list[str] = []
        self.gate = asyncio.Event()


class _MainConn:
    def __init__(self, db: _Db) -> None:
        self.db = db
        self.busy = False

    async def _run(self, what: str) -> None:
        assert not self.busy, f"{what} while another statement runs on the lock connection"
        self.db.log.append(what)

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        await self._run(query.split()[0] + (" outcomes" if query == Q["known_outcomes"] else ""))
        if query == Q["known_outcomes"]:
            return [{"command_id": c} for c in args[0] if c in self.db.outcomes]
        return []

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        assert query == Q["project_batch"]
        await self._run("project start")
        self.busy = True
        try:
            await self.db.gate.wait()
        finally:
            self.busy = False
        for row in orjson.loads(args[7]):
            self.db.outcomes.add(UUID(row["command_id"]))
        self.db.log.append("project committed")
        return {"ok": True}


class _ReadConn:
    def __init__(self, db: _Db) -> None:
        self.db = db

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        assert query == Q["known_outcomes"]
        self.db.log.append("read outcomes")
        return [{"command_id": c} for c in args[0] if c in self.db.outcomes]


class _Metadata:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Producer:
    def __init__(self, db: _Db) -> None:
        self.db = db
        self.next_offset = 0
        self.events: list[Any] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(512 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        count = batch.record_count()
        batch.close()
        buffer = batch._build()
        from aiokafka.record.default_records import DefaultRecordBatch

        for rec in DefaultRecordBatch(bytes(buffer)):
            self.events.append(decode_event(rec.value))
        self.db.log.append(f"publish {count}")
        future = asyncio.get_running_loop().create_future()
        future.set_result(_Metadata(self.next_offset))
        self.next_offset += count
        return future


def _pipeline(tmp_path: Any, db: _Db, *, pipelined: bool = True) -> BatchPipeline:
    """A running sequencer's batch pipeline, on fake connections and producer (epoch 2)."""
    conn = _MainConn(db)
    publisher = Publisher(_Producer(db), "opsml.events", reader=_no_reader)  # type: ignore[arg-type]
    publisher.next_event_offset = 0
    artifacts = Artifacts(open_store(str(tmp_path)), conn, Faults())  # type: ignore[arg-type]
    return BatchPipeline(
        Settings(), conn=conn, read_conn=_ReadConn(db) if pipelined else None,  # type: ignore[arg-type]
        epoch=2, states=StateCache(), publisher=publisher, artifacts=artifacts, authz=None,
        faults=Faults(),
    )  # fmt: skip


def _no_reader() -> Any:
    raise AssertionError("no gap in the fake log: nothing to read back")


def _register(name: str = "churn", command_id: UUID | None = None) -> RegisterCard:
    return RegisterCard(
        command_id=command_id or uuid4(),
        issued_at=NOW,
        registry=RegistryType.RUN,
        space="demo",
        name=name,
        card_type="RunCard",
        attributes=RunCard(space="demo", name=name).attributes(),
    )


class _Records:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, *commands: AnyCommand) -> list[ConsumerRecord[bytes, bytes]]:
        out = []
        for cmd in commands:
            value, key = encode(cmd), cmd.key.encode()
            args: tuple[Any, ...] = (
                "opsml.commands",
                0,
                self.offset,
                0,
                0,
                key,
                value,
                None,
                0,
                0,
                [],
            )
            out.append(ConsumerRecord(*args))
            self.offset += 1
        return out


async def _started(
    tmp_path: Any, *others: AnyCommand
) -> tuple[_Db, BatchPipeline, _Records, RegisterCard]:
    """A pipeline whose first batch (a registration of a cached name, then `others`) has been
    published and is being projected: the fake database holds the projection at its gate."""
    db = _Db()
    seq = _pipeline(tmp_path, db)
    records = _Records()
    first = _register()
    await seq.states.load(seq.conn, {first.key})  # the name is cached, as in a running worker
    await seq.process(records(first, *others))
    return db, seq, records, first


async def _spin() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_next_batch_is_decided_during_the_projection_and_published_after_it(
    tmp_path: Any,
) -> None:
    db, seq, records, first = await _started(tmp_path, _register())
    assert seq.projecting is not None and not seq.projecting.done()  # projection under way

    retry = _register(command_id=first.command_id)  # a client retry of a command in flight
    second = asyncio.create_task(seq.process(records(_register(), retry)))
    await _spin()
    assert not second.done()
    assert "read outcomes" in db.log  # decided on the second connection ...
    assert db.log.count("publish 2") == 1  # ... but not published yet
    assert seq.publisher.producer.events and len(seq.publisher.producer.events) == 2  # type: ignore[union-attr]

    db.gate.set()
    await second
    await seq.drain()
    assert db.log.index("project committed") < db.log.index("publish 1")
    events = seq.publisher.producer.events  # type: ignore[union-attr]
    assert [type(e) for e in events] == [CardRegistered] * 3  # the retry decided nothing
    assert [e.card.version for e in events] == ["1.0.0", "1.1.0", "1.2.0"]
    assert db.outcomes == {e.command_id for e in events}


async def test_a_batch_that_reads_card_records_waits_for_the_projection(
    tmp_path: Any,
) -> None:
    db, seq, records, _ = await _started(tmp_path)
    card = seq.publisher.producer.events[0].card  # type: ignore[union-attr]
    update = UpdateCard(
        command_id=uuid4(), issued_at=NOW, registry=card.registry, space=card.space,
        name=card.name, uid=card.uid, description="changed",
    )  # fmt: skip
    nxt = asyncio.create_task(seq.process(records(update, _register("other"))))
    await _spin()
    assert not nxt.done() and "read outcomes" not in db.log  # waits, reads nothing meanwhile
    db.gate.set()
    await nxt
    await seq.drain()
    # the update read the card records only after the projection had committed (the fake
    # database has no rows, so it is rejected as not found - the order is what is checked)
    after = db.log[db.log.index("project start") :]
    assert after[:4] == ["project start", "project committed", "SELECT outcomes", "SELECT"]
    assert "read outcomes" not in db.log
    kinds = [type(e) for e in seq.publisher.producer.events]  # type: ignore[union-attr]
    assert kinds == [CardRegistered, CommandRejected, CardRegistered]
    assert CardUpdated not in kinds


async def test_without_the_pipeline_each_batch_is_projected_before_process_returns(
    tmp_path: Any,
) -> None:
    db = _Db()
    db.gate.set()
    seq = _pipeline(tmp_path, db, pipelined=False)
    await seq.process(_Records()(_register()))
    assert seq.projecting is None and db.log[-1] == "project committed"


async def test_a_command_pointing_at_a_card_registered_in_its_batch_is_decided_after_it(
    tmp_path: Any,
) -> None:
    """The registration may yet be refused by the read tables (set aside as unstorable): a
    command decided against the batch's memory of it would be answered as if the card existed.
    So the batch is cut before that command, which reads the card from the database once the
    registration is committed (the fake database has no rows: not found)."""
    db = _Db()
    db.gate.set()
    seq = _pipeline(tmp_path, db, pipelined=False)
    reg = _register("ghost")
    update = UpdateCard(
        command_id=uuid4(), issued_at=NOW, registry=reg.registry, space=reg.space,
        name=reg.name, uid=uid_for_command(reg.command_id), description="changed",
    )  # fmt: skip
    await seq.process(_Records()(_register("before"), reg, update, _register("after")))
    # two batches, the second decided after the first committed
    assert [e for e in db.log if e.startswith(("publish", "project"))] == [
        "publish 2", "project start", "project committed",
        "publish 2", "project start", "project committed",
    ]  # fmt: skip
    events = seq.publisher.producer.events  # type: ignore[attr-defined]
    kinds = [type(e) for e in events]
    assert kinds == [CardRegistered, CardRegistered, CommandRejected, CardRegistered]
    assert events[2].error_code == "card_not_found"


async def test_state_cache_reloads_the_batch_names_it_cleared() -> None:
    """Past its size the cache starts again; the names of the batch that were cached before
    must be loaded again, not read as new names (which would give out 1.0.0 a second time)."""

    class _Versions:
        async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
            if query == Q["aliases_for_keys"]:
                return []  # (no name has an alias)
            assert query == Q["versions_for_keys"]
            return [
                {"registry": r, "space": s, "name": n, "version": "1.0.0"}
                for r, s, n in zip(*args, strict=True)
            ]

    cache = StateCache(max_names=2)
    conn = _Versions()
    await cache.load(conn, {"run/demo/a"})  # type: ignore[arg-type]
    await cache.load(conn, {"run/demo/a", "run/demo/b", "run/demo/c"})  # type: ignore[arg-type]
    for key in ("run/demo/a", "run/demo/b", "run/demo/c"):
        assert key in cache and cache.get(key).versions == {"1.0.0"}
