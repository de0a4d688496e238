"""The wire contract: decoding never raises for bad input, and stored payloads keep loading."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import orjson
import pytest

from registry_core.contracts import codec
from registry_core.contracts.codec import UndecodableCommand, decode_command, decode_event, encode
from registry_core.domain.cards import CardRecord, RegistryType, RunCard
from registry_core.domain.commands import RegisterCard
from registry_core.domain.events import CardRegistered
from tests.support.wire import command

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
LIMIT = 1_048_576


valid = command


def test_roundtrip() -> None:
    cmd = RegisterCard.model_validate(valid())
    assert decode_command(encode(cmd), max_bytes=LIMIT) == cmd


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"", "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"just a string"', "must be a JSON object"),
        (b"{}", "invalid command"),
    ],
)
def test_malformed_messages_become_errors_not_exceptions(raw: bytes | None, reason: str) -> None:
    out = decode_command(raw, max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert reason in out.error.message


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"name": "Bad Name"}, "name: name 'Bad Name' is invalid"),
        ({"space": "../etc"}, "space"),
        ({"registry": "nope"}, "registry"),
        ({"version_type": "sideways"}, "version_type"),
        ({"issued_at": "yesterday"}, "issued_at"),
        ({"surprise": 1}, "surprise"),
        ({"tags": {"k": 5}}, "tags"),
    ],
)
def test_invalid_fields_keep_the_command_id(patch: dict[str, object], reason: str) -> None:
    data = valid() | patch
    out = decode_command(orjson.dumps(data), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert out.command_id == UUID(str(data["command_id"]))
    assert reason in out.error.message


def test_unknown_schema_version() -> None:
    out = decode_command(orjson.dumps(valid() | {"schema_version": 99}), max_bytes=LIMIT)
    assert isinstance(out, UndecodableCommand)
    assert out.error.code == "unsupported_schema_version"


def test_oversize_is_rejected_with_command_id_salvaged() -> None:
    data = valid() | {"description": "x" * 5000}
    raw = orjson.dumps(data)
    out = decode_command(raw, max_bytes=2048)
    assert isinstance(out, UndecodableCommand)
    assert "over the 2048-byte limit" in out.error.message
    assert out.command_id == UUID(str(data["command_id"]))


def test_stored_v1_event_fixture_still_loads() -> None:
    raw = (FIXTURES / "card_registered_v1.json").read_bytes()
    event = decode_event(raw)
    assert isinstance(event, CardRegistered)
    assert event.card.version == "1.0.0"
    assert isinstance(event.card.to_card(), RunCard)


def test_upcasters_run_in_a_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v0 payload (hypothetical older shape: `card_record` instead of `card`) is upcast."""
    old = json.loads((FIXTURES / "card_registered_v1.json").read_text())
    old["card_record"] = old.pop("card")
    old["schema_version"] = 0

    def v0_to_v1(data: dict[str, object]) -> dict[str, object]:
        data = dict(data)
        data["card"] = data.pop("card_record")
        return data

    monkeypatch.setitem(codec.UPCASTERS, ("card_registered", 0), v0_to_v1)
    event = decode_event(orjson.dumps(old))
    assert isinstance(event, CardRegistered) and event.schema_version == 1


def test_newer_event_versions_are_refused_clearly() -> None:
    data = json.loads((FIXTURES / "card_registered_v1.json").read_text()) | {"schema_version": 7}
    with pytest.raises(Exception, match="newer than this reader"):
        decode_event(orjson.dumps(data))


def test_record_to_card_roundtrip() -> None:
    card = RunCard(space="s", name="n", tags={"a": "b"}, parameters={"lr": 0.1})
    record = CardRecord(
        uid=uuid4(), registry=RegistryType.RUN, space="s", name="n", version="1.0.0",
        card_type="RunCard", tags=card.tags, attributes=card.attributes(),
        created_at=datetime.now(UTC), command_id=uuid4(),
    )  # fmt: skip
    back = record.to_card()
    assert isinstance(back, RunCard) and back.parameters == {"lr": 0.1} and back.version == "1.0.0"
