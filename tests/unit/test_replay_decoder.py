"""The replay bulk path's decoder (workers/replay/bulk.py): its registration fast path takes only
payloads in exactly the sequencer's canonical form and sends everything else to the slow path
(decoded through the models and projected by `project()`), and its binary timestamps are the
ones asyncpg would have sent for the parsed datetimes."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from registry_core.contracts.codec import encode
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.events import CardRegistered, event_id_for, uid_for_command
from workers.replay import ReplayStats
from workers.replay.bulk import BulkState, Decoder, pg_time

T0 = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)


def _registration(**card: Any) -> dict[str, Any]:
    cid = uuid.uuid4()
    rec = CardRecord(
        uid=uid_for_command(cid), registry=RegistryType.RUN, space="demo", name="exp",
        version="1.0.0", card_type="RunCard", created_at=T0, command_id=cid, actor="ds",
        tags={"k": "v"}, **card,
    )  # fmt: skip
    ev = CardRegistered(
        event_id=event_id_for(cid, 1), command_id=cid, occurred_at=T0, epoch=1,
        command_offset=7, card=rec,
    )  # fmt: skip
    return orjson.loads(encode(ev))


def _decode(payload: bytes) -> tuple[Decoder, ReplayStats]:
    stats = ReplayStats()
    decoder = Decoder(BulkState(max_epoch=0), stats)
    rows = decoder.batch([(0, payload)])
    # rows only for what took the fast path (event_log, cards, command_outcomes)
    assert rows.count() == 3 * decoder.s.fast
    return decoder, stats


def test_a_canonical_registration_takes_the_fast_path() -> None:
    raw = encode(CardRegistered.model_validate(_registration()))
    decoder, stats = _decode(raw)
    assert decoder.s.fast == 1 and not decoder.s.deferred and stats.undecodable == 0


def _with(path: str, value: Any) -> bytes:
    d = _registration()
    *parents, key = path.split(".")
    target = d
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return orjson.dumps(d)


UPPER = str(uuid.uuid4()).upper()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event_id", UPPER),  # valid for the model, not the canonical form
        ("card.uid", UPPER),
        ("card.command_id", str(uuid.uuid4()).replace("-", "")),
        ("epoch", True),  # a bool is no int here
        ("epoch", 1.0),
        ("schema_version", 1.0),
        ("command_offset", "7"),
        ("occurred_at", "2026-11-24T01:02:03.456Z"),  # 3-digit fraction
        ("occurred_at", "2026-11-24T01:02:03+00:00"),
        ("card.created_at", "2026-11-24 01:02:03Z"),
        ("card.created_at", "2026-1a-24T01:02:03Z"),  # hex where a digit belongs
        ("card.created_at", "2026-13-24T01:02:03Z"),  # the right shape, no date
        ("card.created_at", "2026-11-24T01:02:03.00000aZ"),
        ("card.updated_at", "yesterday"),
        ("card.tags", {"k": 1}),
        ("card.tags", ["k"]),
        ("card.registry", "RUN"),
        ("card.status", ["active"]),
        ("card.description", 3),
        ("card.actor", {"name": "ds"}),
        ("card.extra", "x"),  # a key the model does not have
        ("card.actor", KeyError),  # a key missing
        ("type", KeyError),
    ],
)
def test_anything_else_goes_to_the_slow_path(path: str, value: Any) -> None:
    decoder, stats = _decode(_with(path, value))
    assert decoder.s.fast == 0
    # decoded through the models and projected by project(), or skipped as undecodable
    assert len(decoder.s.deferred) + stats.undecodable == 1


def test_pg_time_is_asyncpgs_binary_timestamp() -> None:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    rnd = random.Random(5)
    for _ in range(2000):
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rnd.randrange(0, 4_000_000_000),
            microseconds=rnd.choice((0, rnd.randrange(1, 10**6))),
        )
        text = dt.isoformat().replace("+00:00", "Z")
        delta = dt - epoch
        expected = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        assert pg_time(text) == (expected,), text
