"""The worker decides a batch while the previous one is being projected, and never publishes it
before that projection committed; a batch that needs card records or artifacts waits for it.

Fakes stand in for Postgres and Kafka: the lock-holding connection refuses a second statement
while one runs (as asyncpg does), and its projection waits on a gate the test opens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from aiokafka import ConsumerRecord
from aiokafka.producer.message_accumulator import BatchBuilder

from registry_core.contracts.codec import decode_event, encode
from registry_core.domain.cards import RegistryType, RunCard
from registry_core.domain.commands import AnyCommand, RegisterCard, UpdateCard
from registry_core.domain.events import CardRegistered, CardUpdated, CommandRejected
from registry_core.persistence.db import Q
from registry_core.settings import Settings
from workers.sequencer.worker import Sequencer

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


def _sequencer(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, db: _Db) -> Sequencer:
    monkeypatch.setenv("OPSML_STORAGE_URI", str(tmp_path))
    seq = Sequencer(Settings())
    seq.conn = _MainConn(db)  # type: ignore[assignment]
    seq.read_conn = _ReadConn(db)  # type: ignore[assignment]
    seq.producer = _Producer(db)  # type: ignore[assignment]
    seq.epoch = 2
    seq.next_event_offset = 0
    return seq


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
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, *others: AnyCommand
) -> tuple[_Db, Sequencer, _Records, RegisterCard]:
    """A sequencer whose first batch (a registration of a cached name, then `others`) has been
    published and is being projected: the fake database holds the projection at its gate."""
    db = _Db()
    seq = _sequencer(monkeypatch, tmp_path, db)
    records = _Records()
    first = _register()
    await seq._load_states({first.key})  # the name is known (cached), as in a running worker
    await seq.process(records(first, *others))
    return db, seq, records, first


async def _spin() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_next_batch_is_decided_during_the_projection_and_published_after_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    db, seq, records, first = await _started(monkeypatch, tmp_path, _register())
    assert seq._pending is not None and not seq._pending.done()  # projection under way

    retry = _register(command_id=first.command_id)  # a client retry of a command in flight
    second = asyncio.create_task(seq.process(records(_register(), retry)))
    await _spin()
    assert not second.done()
    assert "read outcomes" in db.log  # decided on the second connection ...
    assert db.log.count("publish 2") == 1  # ... but not published yet
    assert seq.producer.events and len(seq.producer.events) == 2  # type: ignore[union-attr]

    db.gate.set()
    await second
    await seq._drain()
    assert db.log.index("project committed") < db.log.index("publish 1")
    events = seq.producer.events  # type: ignore[union-attr]
    assert [type(e) for e in events] == [CardRegistered] * 3  # the retry decided nothing
    assert [e.card.version for e in events] == ["1.0.0", "1.1.0", "1.2.0"]
    assert db.outcomes == {e.command_id for e in events}


async def test_a_batch_that_reads_card_records_waits_for_the_projection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    db, seq, records, _ = await _started(monkeypatch, tmp_path)
    card = seq.producer.events[0].card  # type: ignore[union-attr]
    update = UpdateCard(
        command_id=uuid4(), issued_at=NOW, registry=card.registry, space=card.space,
        name=card.name, uid=card.uid, description="changed",
    )  # fmt: skip
    nxt = asyncio.create_task(seq.process(records(update, _register("other"))))
    await _spin()
    assert not nxt.done() and "read outcomes" not in db.log  # waits, reads nothing meanwhile
    db.gate.set()
    await nxt
    await seq._drain()
    # the update read the card records only after the projection had committed (the fake
    # database has no rows, so it is rejected as not found - the order is what is checked)
    after = db.log[db.log.index("project start") :]
    assert after[:4] == ["project start", "project committed", "SELECT outcomes", "SELECT"]
    assert "read outcomes" not in db.log
    kinds = [type(e) for e in seq.producer.events]  # type: ignore[union-attr]
    assert kinds == [CardRegistered, CommandRejected, CardRegistered]
    assert CardUpdated not in kinds


async def test_without_the_pipeline_each_batch_is_projected_before_process_returns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    db = _Db()
    db.gate.set()
    seq = _sequencer(monkeypatch, tmp_path, db)
    seq.read_conn = None
    await seq.process(_Records()(_register()))
    assert seq._pending is None and db.log[-1] == "project committed"
