"""The sequencer's shortcuts give exactly what the general code gives: uuid5, the release bump,
the attribute validation memo, evolve's newest version, and the offsets of events published in
record batches."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
import semver
from aiokafka.producer.message_accumulator import BatchBuilder

from registry_core.domain import attributes as memo
from registry_core.domain import decider
from registry_core.domain.cards import CARD_CLASSES, ModelCard, RegistryType, RunCard, plain_json
from registry_core.domain.commands import RegisterCard
from registry_core.domain.decider import Context, handle
from registry_core.domain.errors import InvalidCommand, InvalidVersion
from registry_core.domain.events import (
    OPSML_NAMESPACE,
    CardRegistered,
    CommandRejected,
    _uuid5,
    event_id_for,
    uid_for_command,
)
from registry_core.domain.state import NameState, evolve, fold
from registry_core.domain.versioning import MAX_PART, VersionType, _bump, _bump_free

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_uuid5_matches_the_standard_library() -> None:
    rng = random.Random(7)
    for i in range(2000):
        cid = UUID(int=rng.getrandbits(128))
        for name in (f"card:{cid}", f"event:{cid}:{i}:0", f"epoch:t:{i}", f"undecodable:é:{i}"):
            assert _uuid5(name) == uuid.uuid5(OPSML_NAMESPACE, name)
        assert uid_for_command(cid) == uuid.uuid5(OPSML_NAMESPACE, f"card:{cid}")
        assert event_id_for(cid, i) == uuid.uuid5(OPSML_NAMESPACE, f"event:{cid}:{i}:0")


def _general(recent: semver.Version, vt: VersionType, taken: set[str]) -> str:
    """_bump_free without its shortcut."""
    candidate = _bump(recent, vt, taken, "rc", "build")
    while str(candidate) in taken:
        candidate = _bump(candidate, vt, taken, "rc", "build")
    if max(candidate.major, candidate.minor, candidate.patch) > MAX_PART:
        raise InvalidVersion("out of range")
    return str(candidate)


@pytest.mark.parametrize("vt", [VersionType.MAJOR, VersionType.MINOR, VersionType.PATCH])
def test_release_bump_shortcut_matches_the_general_bump(vt: VersionType) -> None:
    rng = random.Random(11)
    parts = [0, 1, 2, 9, 10, 99, 100, MAX_PART - 1, MAX_PART]
    for _ in range(3000):
        recent = semver.Version(rng.choice(parts), rng.choice(parts), rng.choice(parts))
        # sometimes the plain bump is taken already (an explicit version registered earlier)
        taken = {str(recent)}
        if rng.random() < 0.3:
            taken.add(_general(recent, vt, set()) if max(recent.to_tuple()[:3]) < MAX_PART else "")
        try:
            want: str | Exception = _general(recent, vt, taken)
        except InvalidVersion as exc:
            want = exc
        try:
            got: str | Exception = _bump_free(recent, vt, taken, "rc", "build")
        except InvalidVersion as exc:
            got = exc
        if isinstance(want, Exception):
            assert isinstance(got, InvalidVersion), (recent, vt, taken, got)
        else:
            assert got == want, (recent, vt, taken)


def _register(cls: type, attributes: dict[str, Any]) -> RegisterCard:
    return RegisterCard(
        command_id=uuid4(),
        issued_at=NOW,
        registry=cls.registry_type,
        space="demo",
        name="memo",
        card_type=cls.card_type,
        attributes=attributes,
    )


ATTRIBUTES: list[tuple[type, dict[str, Any]]] = [
    (RunCard, RunCard(space="a", name="b").attributes()),
    (RunCard, {}),
    (RunCard, {"parameters": {"lr": 0.1, "n": 3, "ok": True, "s": "x", "none": None}}),
    (RunCard, {"metrics": [{"name": "auc", "value": 1, "step": 2}]}),
    (RunCard, {"metrics": [{"name": "auc", "value": "high"}]}),  # invalid
    (RunCard, {"tags": {"k": "v"}}),  # a base field: validated, not kept
    (RunCard, {"space": "other"}),  # clashes with the command's space: rejected
    (RunCard, {"unknown": 1}),  # extra: rejected
    (ModelCard, {"datacard_uid": str(uuid4()), "framework": "sklearn"}),
    (ModelCard, {"datacard_uid": "not-a-uid"}),  # invalid
    (ModelCard, {"model_init_kwargs": {"a": [1, 2.5, {"b": None}]}}),
]


def _decide_register(cls: type, attributes: dict[str, Any]) -> Any:
    cmd = _register(cls, attributes)
    try:
        return memo.validate(cls, cmd, attributes)
    except InvalidCommand as exc:
        return ("rejected", exc.message)


def test_attribute_memo_gives_what_validation_gives() -> None:
    memo._CACHE.clear()
    for _ in range(3):  # first round fills the memo, later rounds read it
        for cls, attributes in ATTRIBUTES:
            want = _decide_register(cls, attributes)
            cmd = _register(cls, attributes)
            try:
                got: Any = memo.validated(cls, cmd, attributes)
            except InvalidCommand as exc:
                got = ("rejected", exc.message)
            assert got == want, (cls, attributes)
            assert type(got) is type(want)
    assert memo._CACHE  # it was used


def test_attribute_memo_hands_out_independent_values() -> None:
    memo._CACHE.clear()
    attributes = {"parameters": {"a": 1}, "metrics": []}
    first = memo.validated(RunCard, _register(RunCard, attributes), attributes)
    first["parameters"]["a"] = 2
    first["metrics"].append("mutated")
    second = memo.validated(RunCard, _register(RunCard, attributes), attributes)
    assert second["parameters"] == {"a": 1} and second["metrics"] == []


def test_attribute_memo_never_mixes_a_uuid_object_with_its_text() -> None:
    """A str-typed attribute refuses a UUID object but takes its text; both serialise alike."""
    memo._CACHE.clear()
    uid = uuid4()
    text = {"model_class": str(uid)}
    obj = {"model_class": uid}
    assert memo.validated(ModelCard, _register(ModelCard, text), text)
    with pytest.raises(InvalidCommand):
        memo.validated(ModelCard, _register(ModelCard, text), obj)


def test_attribute_memo_is_bounded() -> None:
    memo._CACHE.clear()
    for i in range(memo._CACHE_MAX + 10):
        attributes = {"parameters": {"i": i}}
        memo.validated(RunCard, _register(RunCard, attributes), attributes)
    assert len(memo._CACHE) <= memo._CACHE_MAX


def test_registrations_through_the_memo_match_the_card_classes() -> None:
    """handle() with the memo warm gives the same record attributes as a cold one."""
    ctx = Context(now=NOW, epoch=1, command_offset=0)
    for cls in CARD_CLASSES.values():
        attributes = cls(space="demo", name="memo").attributes()
        memo._CACHE.clear()
        cold = handle(_register(cls, attributes), decider.INITIAL_STATE, {}, ctx)[0]
        warm = handle(_register(cls, attributes), decider.INITIAL_STATE, {}, ctx)[0]
        assert isinstance(cold, CardRegistered) and isinstance(warm, CardRegistered)
        assert cold.card.attributes == warm.card.attributes == attributes
    bad = {"metrics": "nope"}
    out = handle(_register(RunCard, bad), decider.INITIAL_STATE, {}, ctx)[0]
    assert isinstance(out, CommandRejected) and out.error_code == InvalidCommand.code


class _Metadata:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Producer:
    """send_batch answers with each batch's base offset, as Kafka does."""

    def __init__(self, batch_bytes: int, start: int) -> None:
        self.batch_bytes = batch_bytes
        self.next_offset = start
        self.batches: list[int] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        assert partition == 0
        count = batch.record_count()
        batch.close()
        self.batches.append(count)
        future = asyncio.get_running_loop().create_future()
        future.set_result(_Metadata(self.next_offset))
        self.next_offset += count
        return future


@pytest.mark.parametrize("batch_bytes", [200, 1500, 512 * 1024])
def test_published_offsets_follow_the_record_batches(batch_bytes: int) -> None:
    from workers.sequencer.publishing import Publisher

    ctx = Context(now=NOW, epoch=1, command_offset=0)
    events = [
        handle(_register(RunCard, {"parameters": {"i": "x" * (i % 50)}}), decider.INITIAL_STATE,
               {}, ctx)[0]
        for i in range(40)
    ]  # fmt: skip
    payloads = [b"p" * (10 + 37 * (i % 7)) for i in range(len(events))]
    producer = _Producer(batch_bytes, start=1000)
    publisher = Publisher(producer, "events", reader=lambda: None)  # type: ignore[arg-type]
    offsets = asyncio.run(publisher.publish(events, payloads))
    assert offsets == list(range(1000, 1040))
    assert sum(producer.batches) == 40
    if batch_bytes == 200:
        assert len(producer.batches) > 1


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ({}, True),
        ([], True),
        ({"parameters": {}, "metrics": [], "uids": []}, True),
        ({"a": [1, 2.5, "x", None, True, {"b": [], "c": {"d": -0.0}}]}, True),
        ("text", True),
        ({"a": uuid4()}, False),
        ({"a": [RegistryType.RUN]}, False),  # a str subclass
        ({"a": float("nan")}, False),
        ({"a": {"b": [{"c": float("inf")}]}}, False),
        ({1: 2}, False),
        ({"a": (1, 2)}, False),
        ({"a": NOW}, False),
    ],
)
def test_plain_json(value: Any, plain: bool) -> None:
    assert plain_json(value) is plain


def test_projection_rows_have_the_statement_columns_in_order() -> None:
    from registry_core.persistence import projection

    ctx = Context(now=NOW, epoch=1, command_offset=3)
    registered = handle(_register(RunCard, {}), decider.INITIAL_STATE, {}, ctx)[0]
    rejected = handle(_register(RunCard, {"unknown": 1}), decider.INITIAL_STATE, {}, ctx)[0]
    assert isinstance(registered, CardRegistered) and isinstance(rejected, CommandRejected)
    assert tuple(projection.card_row(registered, 7)) == projection.CARD_COLUMNS
    for ev in (registered, rejected):
        row = projection.outcome_row(ev, 7)
        assert row is not None and tuple(row) == projection.OUTCOME_COLUMNS


def test_evolve_keeps_the_newest_as_semver_precedence_does() -> None:
    """evolve compares releases by their numbers (its shortcut) and grows an owned set in
    place: the newest is what semver's comparison picks, the versions what a pure fold holds."""
    ctx = Context(now=NOW, epoch=1, command_offset=0)
    base = handle(_register(RunCard, {}), decider.INITIAL_STATE, {}, ctx)[0]
    assert isinstance(base, CardRegistered)
    rng = random.Random(5)

    def version() -> str:
        text = ".".join(str(rng.choice([0, 1, 2, 9, 10, 11])) for _ in range(3))
        if rng.random() < 0.3:
            text += f"-{rng.choice(['rc', 'alpha', 'rc.1', 'rc.10', '1'])}"
        if rng.random() < 0.3:
            text += f"+build.{rng.randint(0, 3)}"
        return text

    for _ in range(500):
        events = [
            base.model_copy(update={"card": base.card.model_copy(update={"version": version()})})
            for _ in range(rng.randint(1, 12))
        ]
        owned = NameState(set())
        for ev in events:
            owned = evolve(owned, ev)
        pure = fold(events)
        best: semver.Version | None = None
        for ev in events:
            v = semver.Version.parse(ev.card.version)
            if best is None or v > best:
                best = v
        assert owned.newest is not None and str(owned.newest) == str(best)
        assert owned.versions == pure.versions and owned.newest == pure.newest
