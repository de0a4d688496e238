"""The boundary matches the store (issue 19): every value a command, card or event schema accepts
is one Postgres and the event archive can hold, and everything else is refused at the boundary
with a reason naming the field, on the worker (decode, decide) and on the client (before it
publishes).

The expectations come from the store's limits, restated in tests/support/wire.py, not from the
code under test."""

from __future__ import annotations

import json
import time
import typing
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from registry_core.contracts.codec import (
    UndecodableCommand,
    decode_command,
    decode_event,
    encode,
    encode_command,
)
from registry_core.domain import bounds
from registry_core.domain.bounds import MAX_JSON_DEPTH, Record, Storable, json_text_storable
from registry_core.domain.cards import (
    CARD_CLASSES,
    AuditCard,
    CardRecord,
    Metric,
    RegistryType,
    RunCard,
)
from registry_core.domain.commands import Command, DeleteCard, RegisterCard, UpdateCard
from registry_core.domain.decider import Context, NameState, handle, reject
from registry_core.domain.errors import InvalidCommand, clip
from registry_core.domain.events import CardRegistered, CardUpdated, CommandRejected, Event
from registry_core.persistence.rows import card_row, json_rows
from tests.support.wire import (
    INT64_MAX,
    command,
    depth,
    extremes,
    unstorable,
    utc_in_calendar,
)

LIMIT = 1_048_576
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = Context(now=NOW, epoch=3, command_offset=42)
PLUS_ONE = timezone(timedelta(hours=1))
MINUS_ONE = timezone(timedelta(hours=-1))
X = extremes()


def nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def spaced(body: dict[str, Any]) -> bytes:
    """Python's json.dumps: a space after every colon and comma (what a hand-written client
    sends), lone surrogates escaped, huge ints written out."""
    return json.dumps(body).encode()


def refused(body: dict[str, Any]) -> str:
    out = decode_command(spaced(body), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand), f"accepted: {str(body)[:300]}"
    reason = out.error.message
    assert out.error.code == "invalid_command", reason
    assert out.command_id == UUID(body["command_id"]), "the rejection must reach the sender"
    assert unstorable(reason) is None, f"the reason itself cannot be stored: {reason!r}"
    return reason


def run_metric(**fields: Any) -> dict[str, Any]:
    return {"name": "loss", "value": 0.5, **fields}


# ---- the table and its neighbours, on the wire ---------------------------------------

WIRE_REFUSED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "NUL in a tag key": ({"tags": {"a\x00b": "v"}}, ["tags", "NUL"]),
    "NUL in a metadata key": ({"metadata": {"k\x00": 1}}, ["metadata", "NUL"]),
    "NUL in a nested metadata key": ({"metadata": {"o": {"i": [{"k\x00": 1}]}}}, ["metadata.o"]),
    "NUL in an attributes.parameters key": (
        {"attributes": {"parameters": {"lr\x00": 0.1}}},
        ["attributes.parameters", "NUL"],
    ),
    "NUL in nested attributes JSON": (
        {"attributes": {"model_init_kwargs": {"a": {"b\x00": 1}}}, "card_type": "RunCard"},
        ["attributes.model_init_kwargs.a"],
    ),
    "NUL in actor": ({"actor": "me\x00"}, ["actor", "NUL"]),
    "artifact size 2^63": (
        {"artifacts": [{"path": "a.txt", "sha256": "0" * 64, "size": 2**63}]},
        ["artifacts[0].size", str(2**63)],
    ),
    "artifact size 2^64 (a float once decoded)": (
        {"artifacts": [{"path": "a.txt", "sha256": "0" * 64, "size": 2**64}]},
        ["artifacts[0].size", str(2**64)],
    ),
    "int 2^64-1 in metadata": ({"metadata": {"x": 2**64 - 1}}, ["metadata.x", str(2**64 - 1)]),
    "int beyond 2^64 in attributes JSON": (
        {"attributes": {"parameters": {"n": 2**70}}},
        ["attributes.parameters.n", str(2**70)],
    ),
    "int below -2^63 in a list": ({"metadata": {"l": [1, -(2**63) - 1]}}, ["metadata.l[1]"]),
    "issued_at year 1 at +01:00 (year 0 in UTC)": (
        {"issued_at": "0001-01-01T00:00:00+01:00"},
        ["issued_at", "UTC"],
    ),
    "issued_at year 9999 at -01:00 (year 10000 in UTC)": (
        {"issued_at": "9999-12-31T23:59:59-01:00"},
        ["issued_at", "UTC"],
    ),
    "metadata deeper than the store nests": (
        {"metadata": {"d": nest(MAX_JSON_DEPTH)}},
        ["metadata.d", "nested"],
    ),
}


@pytest.mark.parametrize("case", list(WIRE_REFUSED))
def test_unstorable_values_are_refused_on_the_wire_naming_the_field(case: str) -> None:
    overrides, words = WIRE_REFUSED[case]
    reason = refused(command(**overrides))
    for word in words:
        assert word in reason, f"{case}: {reason!r} does not name {word!r}"


def test_update_commands_are_held_to_the_same_bounds() -> None:
    base = command(type="update_card", uid=str(uuid4()))
    del base["card_type"]
    assert "add_metrics[0]" in refused({**base, "add_metrics": [{"n\x00": 1}]})
    assert "add_metrics[0].step" in refused({**base, "add_metrics": [{"step": 2**64}]})
    assert "tags" in refused({**base, "tags": {"\x00": "v"}})


@pytest.mark.parametrize(
    "overrides",
    [
        {"issued_at": "0001-01-01T00:00:00Z"},
        {"issued_at": "0001-01-01T00:00:00-14:00"},
        {"issued_at": "9999-12-31T23:59:59.999999Z"},
        {"issued_at": "9999-12-31T23:59:59+14:00"},
        {"metadata": {"x": INT64_MAX, "y": -(2**63), "f": 1e308}},
        {"metadata": {"d": nest(MAX_JSON_DEPTH - 1)}},
        {"metadata": {"digits": "12345678901234567890123", "u": "\\u0000 as text"}},
        {"artifacts": [{"path": "a.txt", "sha256": "0" * 64, "size": INT64_MAX}]},
    ],
    ids=lambda o: str(o)[:60],
)
def test_the_bounds_themselves_are_accepted_and_encode(overrides: dict[str, Any]) -> None:
    out = decode_command(spaced(command(**overrides)), max_bytes=LIMIT)
    assert isinstance(out, RegisterCard), getattr(out, "error", out)
    (event,) = handle(out, NameState(), {}, CTX)
    assert isinstance(event, CardRegistered), event
    payload = encode(event)
    assert unstorable(orjson.loads(payload)) is None
    assert decode_event(payload) == event


def test_a_naive_issued_at_is_taken_as_utc() -> None:
    out = decode_command(spaced(command(issued_at="2026-01-01T00:00:00")), max_bytes=LIMIT)
    assert isinstance(out, RegisterCard)
    assert out.issued_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_nesting_at_the_limit_fits_every_encoder_on_the_way_to_the_store() -> None:
    """An event nests a card's metadata 3 levels down, a projection row 2: a field at the limit
    must still encode everywhere (orjson stops at 254 levels, pydantic at about 255)."""
    with pytest.raises(TypeError):
        orjson.dumps(nest(255))
    orjson.dumps(nest(254))
    body = command(metadata={"d": nest(MAX_JSON_DEPTH - 1)})
    assert depth(body["metadata"]) == MAX_JSON_DEPTH
    cmd = decode_command(orjson.dumps(body), max_bytes=LIMIT)
    assert isinstance(cmd, RegisterCard)
    (event,) = handle(cmd, NameState(), {}, CTX)
    assert isinstance(event, CardRegistered)
    encode(event)
    json_rows([card_row(event, 7)])
    event.card.model_dump_json()


# ---- decide: the type-specific attributes ------------------------------------------------------

CALENDAR_ENDS = [
    datetime(1, 1, 1, tzinfo=PLUS_ONE),
    datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_ONE),
    datetime(9999, 12, 31, 12, tzinfo=timezone(timedelta(hours=-14))),
]


@pytest.mark.parametrize("when", CALENDAR_ENDS, ids=lambda d: d.isoformat())
def test_metric_timestamps_past_the_calendar_in_utc_are_rejected(when: datetime) -> None:
    assert not utc_in_calendar(when)
    body = command(attributes={"metrics": [run_metric(step=1, timestamp=when.isoformat())]})
    cmd = decode_command(spaced(body), max_bytes=LIMIT)
    assert isinstance(cmd, RegisterCard)
    (event,) = handle(cmd, NameState(), {}, CTX)
    assert isinstance(event, CommandRejected), event
    assert "metrics" in event.reason and "timestamp" in event.reason and "UTC" in event.reason

    # the same through an update's add_metrics, against a registered run
    (registered,) = handle(
        decode_command(spaced(command()), max_bytes=LIMIT),  # type: ignore[arg-type]
        NameState(),
        {},
        CTX,
    )
    assert isinstance(registered, CardRegistered)
    update = command(
        type="update_card",
        uid=str(registered.card.uid),
        add_metrics=[run_metric(timestamp=when.isoformat())],
    )
    del update["card_type"]
    cmd = decode_command(spaced(update), max_bytes=LIMIT)
    assert isinstance(cmd, UpdateCard)
    (event,) = handle(cmd, NameState(), {registered.card.uid: registered.card}, CTX)
    assert isinstance(event, CommandRejected) and "timestamp" in event.reason, event


def test_audit_comment_timestamps_and_nested_keys_are_checked_at_decide() -> None:
    comment = {"author": "a", "comment": "c", "timestamp": "0001-01-01T00:00:00+05:00"}
    body = command(registry="audit", card_type="AuditCard", attributes={"comments": [comment]})
    cmd = decode_command(spaced(body), max_bytes=LIMIT)
    assert isinstance(cmd, RegisterCard)
    (event,) = handle(cmd, NameState(), {}, CTX)
    assert isinstance(event, CommandRejected) and "timestamp" in event.reason, event


# ---- events ----------------------------------------------------------------------------------


def _rejection(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "command_rejected",
        "schema_version": 1,
        "event_id": str(uuid4()),
        "command_id": str(uuid4()),
        "occurred_at": NOW.isoformat(),
        "epoch": 1,
        "command_offset": 5,
        "error_code": "invalid_command",
        "reason": "x",
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "overrides",
    [
        {"epoch": 2**31},  # event_log.epoch is an integer
        {"command_offset": 2**63},
        {"occurred_at": "0001-01-01T00:00:00+01:00"},
    ],
    ids=str,
)
def test_events_the_archive_cannot_hold_do_not_decode(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        decode_event(spaced(_rejection(**overrides)))


def test_a_reason_quoting_a_nul_or_a_surrogate_is_stored_escaped() -> None:
    """A rejection's reason quotes input; it is made storable, never refused (refusing would
    leave the worker nothing to answer with)."""
    event = reject(uuid4(), InvalidCommand("tags key 'a\x00b' \ud800"), CTX, space="a\x00")
    assert unstorable(event.reason) is None and unstorable(event.space) is None
    assert "\\u0000" in event.reason and "\\ud800" in event.reason
    encode(event)
    hand_written = decode_event(spaced(_rejection(reason="a\x00b")))
    assert isinstance(hand_written, CommandRejected) and hand_written.reason == "a\\u0000b"


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(st.characters(exclude_categories=()), max_size=300))
def test_clipped_messages_are_always_storable(text: str) -> None:
    shown = clip(text, 120)
    assert len(shown) <= 120
    assert unstorable(shown) is None


# ---- oversize commands: the id is found whatever the JSON looks like ---------------------------


def _oversize(body: dict[str, Any], *, first: str | None = None) -> dict[str, Any]:
    out = {first: body[first]} if first else {}
    out.update(body)
    out["description"] = "x" * 1_100_000
    return out


def _id_last(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k != "command_id"}
    out["command_id"] = body["command_id"]
    return out


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda b: json.dumps(b).encode(), id="json.dumps-default-spacing"),
        pytest.param(lambda b: json.dumps(b, indent=2).encode(), id="indented"),
        pytest.param(
            lambda b: json.dumps(b, separators=(" ,\n", " \t:\r\n ")).encode(), id="odd-spacing"
        ),
        pytest.param(lambda b: json.dumps(_id_last(b)).encode(), id="id-last-after-the-megabyte"),
        pytest.param(
            lambda b: json.dumps(b).replace('"command_id"', '"command\\u005fid"').encode(),
            id="escaped-key",
        ),
        pytest.param(lambda b: json.dumps(b).encode()[:-5], id="truncated-not-json"),
    ],
)
def test_an_oversize_command_is_answered_whatever_its_spacing(render: Any) -> None:
    body = _oversize(command(space="big", name="card"))
    out = decode_command(render(body), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert "over the" in out.error.message and "limit" in out.error.message
    assert out.command_id == UUID(body["command_id"])


def test_an_oversize_command_is_answered_on_its_own_key() -> None:
    body = _oversize(command(registry="model", space="big", name="card"))
    out = decode_command(json.dumps(body).encode(), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert (out.registry, out.space, out.name) == ("model", "big", "card")


def test_an_oversize_command_id_nested_in_metadata_is_not_taken_for_its_own() -> None:
    body = _oversize(command(metadata={"command_id": str(uuid4())}))
    del body["command_id"]
    out = decode_command(json.dumps(body).encode(), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand) and out.command_id is None


def test_salvaging_a_huge_message_is_bounded() -> None:
    junk = b'{"a": "' + b"\\u0000" * 3_000_000 + b'", "command_id": "' + str(uuid4()).encode()
    t0 = time.monotonic()
    out = decode_command(junk, max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert time.monotonic() - t0 < 2.0


# ---- the client: refused before anything is published -----------------------------------------


def test_a_card_refuses_a_nul_in_a_tag_key_naming_tags() -> None:
    with pytest.raises(ValueError, match=r"(?s)tags.*NUL"):
        RunCard(space="demo", name="churn", tags={"a\x00b": "v"})
    card = RunCard(space="demo", name="churn")
    with pytest.raises(ValueError, match=r"(?s)tags.*NUL"):
        card.tags = {"a\x00b": "v"}


@pytest.mark.parametrize("when", CALENDAR_ENDS, ids=lambda d: d.isoformat())
def test_a_metric_past_the_calendar_in_utc_is_refused_where_it_is_made(when: datetime) -> None:
    with pytest.raises(ValueError, match=r"(?s)timestamp.*UTC"):
        Metric(name="loss", value=1.0, timestamp=when)
    run = RunCard(space="demo", name="churn")
    with pytest.raises(ValueError, match="timestamp"):
        run.log_metric("loss", 1.0, timestamp=when)


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"x": float("nan")}, ["metadata.x", "finite"]),
        ({"x": [float("inf")]}, ["metadata.x[0]", "finite"]),
        ({"\ud800": 1}, ["metadata", "surrogate"]),
        ({"a": {"b": "\udc80"}}, ["metadata.a.b", "surrogate"]),
        ({"n": 2**64}, ["metadata.n"]),
        ({"when": datetime(9999, 12, 31, 23, tzinfo=MINUS_ONE)}, ["metadata.when", "UTC"]),
        ({"b": b"\x00"}, ["metadata.b", "NUL"]),
        ({"d": nest(MAX_JSON_DEPTH)}, ["metadata.d", "nested"]),
    ],
    ids=lambda v: str(v)[:40],
)
def test_cards_refuse_what_the_store_cannot_hold(
    metadata: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        RunCard(space="demo", name="churn", metadata=metadata)
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "value",
    [PurePosixPath("a\x00b"), Decimal("1"), object(), {1, 2}],
    ids=["path-with-nul", "decimal", "object", "set"],
)
def test_the_client_checks_non_json_values_in_the_form_they_are_sent(value: Any) -> None:
    cmd = RegisterCard(
        command_id=uuid4(),
        issued_at=NOW,
        registry=RegistryType.RUN,
        space="demo",
        name="churn",
        card_type="RunCard",
        metadata={"v": value},
    )
    try:
        payload = encode_command(cmd)
    except InvalidCommand as exc:
        assert "metadata" in exc.message or "JSON" in exc.message, exc.message
        return
    # what was sent is what the sequencer takes
    assert isinstance(decode_command(payload, max_bytes=LIMIT), RegisterCard)


# ---- the class, not the list: every model of every schema is checked ---------------------------


def _models() -> set[type[BaseModel]]:
    roots: list[Any] = [Command, Event, *CARD_CLASSES.values(), CardRecord]
    seen: set[type[BaseModel]] = set()
    while roots:
        tp = roots.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in seen:
                continue
            seen.add(tp)
            roots.extend(f.annotation for f in tp.model_fields.values())
        else:
            roots.extend(typing.get_args(tp))
    return seen


def test_every_model_of_every_schema_checks_what_the_store_can_hold() -> None:
    models = _models()
    assert {RegisterCard, UpdateCard, DeleteCard, CardRegistered, AuditCard, Metric} <= models
    unchecked = sorted(m.__name__ for m in models if not issubclass(m, Storable | Record))
    assert not unchecked, f"models whose fields reach the store unchecked: {unchecked}"
    # the one record: built by the sequencer from checked commands and cards, read back as stored
    assert sorted(m.__name__ for m in models if issubclass(m, Record)) == ["CardRecord"]


def test_stored_records_and_events_load_whatever_an_older_version_stored() -> None:
    """A rule added at the boundary must not make a stored card unreadable: the worker loads
    update targets and the log's events, and a record that failed to load would stop it."""
    legacy = {"big": 2**64 - 1, "deep": nest(MAX_JSON_DEPTH + 20)}
    record = CardRecord(
        uid=uuid4(),
        registry=RegistryType.RUN,
        space="demo",
        name="old",
        version="1.0.0",
        card_type="RunCard",
        metadata=legacy,
        attributes={"row_count": 2**63},
        created_at=NOW,
        command_id=uuid4(),
    )
    event = CardRegistered(event_id=uuid4(), command_id=uuid4(), occurred_at=NOW, epoch=1,
                           card=record)  # fmt: skip
    assert decode_event(encode(event)) == event
    # an update of it decides (here: its new tags are taken; the old values stand)
    update = command(type="update_card", uid=str(record.uid), space="demo", name="old",
                     tags={"k": "v"})  # fmt: skip
    del update["card_type"]
    cmd = decode_command(spaced(update), max_bytes=LIMIT)
    assert isinstance(cmd, UpdateCard)
    (out,) = handle(cmd, NameState(), {record.uid: record}, CTX)
    assert isinstance(out, CardUpdated | CommandRejected), out


# ---- the fast path agrees with the walk ------------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(X.json)
def test_text_cleared_by_its_bytes_holds_nothing_unstorable(value: Any) -> None:
    try:
        raw = orjson.dumps(value)
    except TypeError:
        return  # (not JSON orjson writes: surrogates, huge ints)
    decoded = orjson.loads(raw)
    found = bounds.storable_problem(decoded)
    assert (found is None) == (unstorable(decoded) is None and depth(decoded) <= MAX_JSON_DEPTH)
    if json_text_storable(raw):
        assert found is None, found


@settings(max_examples=300, deadline=None, database=None)
@given(X.datetimes)
def test_stored_datetimes_are_exactly_those_inside_the_calendar_in_utc(when: datetime) -> None:
    try:
        metric = Metric(name="m", value=1.0, timestamp=when)
    except ValueError:
        assert not utc_in_calendar(when)
        return
    assert utc_in_calendar(when)
    assert metric.timestamp is not None and metric.timestamp.tzinfo is not None
