"""The API writes command outcomes with orjson from the rows it reads; the bytes must be exactly
what the response models (`CommandOutcome`, `OutcomeList`) produced before."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import orjson
from asyncpg.pgproto.pgproto import UUID as PgUUID

from registry_core.contracts.http import CommandOutcome, OutcomeList
from workers.api.outcomes import outcome_json, outcomes_json, pending_json


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind == 1:
        return rng.randint(-(2**63), 2**63 - 1)
    if kind == 2:
        return "".join(rng.choice('aé\n\t"\\/\x01\u2028🙂z') for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.random()
    if kind == 5:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randrange(4))}


def _pg_stamp(rng: random.Random) -> str:
    """A timestamptz as Postgres writes it inside jsonb (fraction trimmed, offset +HH:MM)."""
    tz = timezone(timedelta(hours=rng.choice([0, 0, 1, -5])))
    t = datetime(2026, 1, 2, 3, 4, 5, rng.choice([0, 120000, 123456, 100]), tzinfo=tz)
    text = t.isoformat()
    if "." in text:
        head, _, rest = text.partition(".")
        frac, offset = rest[:6].rstrip("0"), rest[6:]
        text = f"{head}.{frac}{offset}" if frac else f"{head}{offset}"
    return text


def _card(rng: random.Random, uid: UUID, cid: UUID) -> dict[str, Any]:
    card = {  # jsonb key order (by length), as asyncpg hands it over
        "uid": str(uid),
        "name": "n1",
        "tags": {"a": "b"} if rng.random() < 0.5 else {},
        "actor": rng.choice([None, "root"]),
        "space": "team-a",
        "status": rng.choice(["active", "deleted"]),
        "version": "1.2.0-rc.1",
        "metadata": {f"m{i}": _value(rng) for i in range(rng.randrange(4))},
        "registry": "run",
        "artifacts": [
            {"path": f"f{i}.bin", "size": i, "sha256": "a" * 64}
            | ({"media_type": "text/plain"} if i % 2 else {})
            for i in range(rng.randrange(3))
        ],
        "card_type": "run",
        "attributes": {f"x{i}": _value(rng) for i in range(rng.randrange(4))},
        "command_id": str(cid),
        "created_at": _pg_stamp(rng),
        "updated_at": rng.choice([None, _pg_stamp(rng)]),
        "description": rng.choice([None, "d"]),
        "event_offset": rng.randrange(10**9),
    }
    return card


def _row(rng: random.Random, with_card: bool) -> dict[str, Any]:
    cid, uid = PgUUID(str(uuid4())), PgUUID(str(uuid4()))  # what asyncpg returns
    rejected = rng.random() < 0.3
    row: dict[str, Any] = {
        "command_id": cid,
        "status": "rejected" if rejected else rng.choice(["registered", "updated", "deleted"]),
        "uid": None if rejected else uid,
        "version": None if rejected else "1.2.0",
        "error_code": "forbidden" if rejected else None,
        "reason": "no\x00way 🙂" if rejected else None,
        "event_offset": None if rejected else rng.randrange(10**6),
        "decided_at": datetime.now(UTC) - timedelta(microseconds=rng.choice([0, 1, 500000])),
    }
    if with_card:
        row["card"] = None if rejected else _card(rng, uid, cid)
    return row


def test_one_outcome_is_byte_identical() -> None:
    rng = random.Random(8)
    for _ in range(500):
        row = _row(rng, with_card=True)
        assert outcome_json(row) == CommandOutcome(**row).model_dump_json().encode()


def test_bulk_outcomes_are_byte_identical() -> None:
    rng = random.Random(9)
    rows = [_row(rng, with_card=False) for _ in range(200)]
    expected = OutcomeList(outcomes=[CommandOutcome(**r) for r in rows]).model_dump_json()
    assert outcomes_json(rows) == expected.encode()
    assert outcomes_json([]) == b'{"outcomes":[]}'


def test_pending_is_byte_identical() -> None:
    cid = uuid4()
    pending = CommandOutcome(command_id=cid, status="pending").model_dump(mode="json")
    assert pending_json(cid) == orjson.dumps(pending)
