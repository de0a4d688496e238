"""Aliases in the pure domain: given(events) / when(command) / then(events | error)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from registry_core.contracts.codec import UndecodableCommand, decode_command, decode_event, encode
from registry_core.domain.aliases import parse_protected, validate_alias
from registry_core.domain.cards import CardRecord, RegistryType
from registry_core.domain.commands import DeleteCard, RegisterCard, RemoveAlias, SetAlias
from registry_core.domain.decider import Context, decide, fold, handle
from registry_core.domain.errors import AliasInUse, AliasNotFound, CardIsDeleted, InvalidName
from registry_core.domain.events import (
    AliasRemoved,
    AliasSet,
    CardDeleted,
    CardRegistered,
    CommandRejected,
    Event,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = Context(now=NOW, epoch=1, command_offset=0)
WHERE: dict[str, Any] = {"registry": RegistryType.MODEL, "space": "demo", "name": "churn"}


def _cmd(cls: Any, **fields: Any) -> Any:
    return cls(command_id=uuid4(), issued_at=NOW, actor="ana", **WHERE, **fields)


def _registered(n: int) -> tuple[list[Event], list[CardRecord]]:
    events: list[Event] = []
    state = fold([])
    for _ in range(n):
        ev = decide(_cmd(RegisterCard, card_type="ModelCard"), state, {}, CTX)
        state = fold(ev, state)
        events += ev
    return events, [e.card for e in events if isinstance(e, CardRegistered)]


def test_set_move_and_remove_keep_where_the_alias_pointed() -> None:
    history, (v1, v2) = _registered(2)
    refs = {v1.uid: v1, v2.uid: v2}
    first = decide(_cmd(SetAlias, alias="prod", uid=v1.uid), fold(history), refs, CTX)
    assert isinstance(first[0], AliasSet)
    assert (first[0].version, first[0].previous_version, first[0].actor) == ("1.0.0", None, "ana")
    history += first
    moved = decide(_cmd(SetAlias, alias="prod", uid=v2.uid), fold(history), refs, CTX)
    assert isinstance(moved[0], AliasSet)
    assert (moved[0].version, moved[0].previous_version) == ("1.1.0", "1.0.0")
    assert moved[0].previous_uid == v1.uid
    history += moved
    assert fold(history).aliases == {"prod": (v2.uid, "1.1.0")}
    removed = decide(_cmd(RemoveAlias, alias="prod"), fold(history), refs, CTX)
    assert isinstance(removed[0], AliasRemoved)
    assert (removed[0].uid, removed[0].version) == (v2.uid, "1.1.0")
    assert fold([*history, *removed]).aliases == {}


def test_deleting_a_version_an_alias_points_at_is_refused_with_the_reason() -> None:
    history, (v1, v2) = _registered(2)
    refs = {v1.uid: v1, v2.uid: v2}
    history += decide(_cmd(SetAlias, alias="prod", uid=v1.uid), fold(history), refs, CTX)
    history += decide(_cmd(SetAlias, alias="champion", uid=v1.uid), fold(history), refs, CTX)
    with pytest.raises(AliasInUse, match="aliases 'champion', 'prod' point at it"):
        decide(_cmd(DeleteCard, uid=v1.uid), fold(history), refs, CTX)
    out = handle(_cmd(DeleteCard, uid=v1.uid), fold(history), refs, CTX)
    assert isinstance(out[0], CommandRejected) and out[0].error_code == "alias_in_use"
    # the other version has no alias: it can go
    assert isinstance(
        decide(_cmd(DeleteCard, uid=v2.uid), fold(history), refs, CTX)[0], CardDeleted
    )


def test_an_alias_needs_a_live_version_of_the_same_name() -> None:
    history, (v1,) = _registered(1)
    deleted = v1.model_copy(update={"status": "deleted"})
    with pytest.raises(CardIsDeleted):
        decide(_cmd(SetAlias, alias="prod", uid=v1.uid), fold(history), {v1.uid: deleted}, CTX)
    other = v1.model_copy(update={"name": "other"})
    out = handle(_cmd(SetAlias, alias="prod", uid=v1.uid), fold(history), {v1.uid: other}, CTX)
    assert isinstance(out[0], CommandRejected) and out[0].error_code == "card_not_found"
    with pytest.raises(AliasNotFound, match="no alias 'prod'"):
        decide(_cmd(RemoveAlias, alias="prod"), fold(history), {}, CTX)


@pytest.mark.parametrize(
    "bad", ["", "Prod", "1.2.0", "7", "-x", "x-", "a" * 65, "pr od", "pr\x00d"]
)
def test_bad_alias_names_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(InvalidName, match="alias"):
        validate_alias(bad)


def test_a_bad_alias_on_the_wire_is_an_undecodable_command_not_a_crash() -> None:
    good = _cmd(SetAlias, alias="prod", uid=uuid4())
    payload = encode(good).replace(b'"prod"', b'"PROD_1"')
    out = decode_command(payload, max_bytes=10_000)
    assert isinstance(out, UndecodableCommand)
    assert "alias" in out.error.message and out.command_id == good.command_id
    assert decode_command(encode(good), max_bytes=10_000) == good


def test_alias_events_round_trip_and_are_keyed_by_name() -> None:
    history, (v1,) = _registered(1)
    ev = decide(_cmd(SetAlias, alias="prod", uid=v1.uid), fold(history), {v1.uid: v1}, CTX)[0]
    assert decode_event(encode(ev)) == ev
    assert ev.partition_key == "model/demo/churn"


def test_protected_aliases_setting() -> None:
    assert parse_protected("prod, production,") == {"prod", "production"}
    with pytest.raises(InvalidName):
        parse_protected("Prod")


def test_as_of_takes_an_offset_or_an_iso_time_and_says_what_it_accepts() -> None:
    from registry_core.domain.errors import InvalidQuery
    from registry_core.persistence.as_of import overlay, parse

    assert parse("1234") == 1234 and parse(0) == 0 and parse(None) is None
    assert parse("2026-12-01T14:00:00Z") == datetime(2026, 12, 1, 14, tzinfo=UTC)
    assert parse("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)  # no zone: UTC
    for bad in ("last tuesday", "-1", "12:00", "1e3", ""):
        with pytest.raises(InvalidQuery, match="neither an event offset"):
            parse(bad)
    with pytest.raises(InvalidQuery, match="out of range"):
        parse(-5)
    # a card that changed later is shown with the archived record's mutable fields
    row = {"tags": {"a": "now"}, "status": "deleted", "version": "1.0.0", "asof_payload": {
        "card": {"tags": {"a": "then"}, "status": "active", "updated_at": None, "version": "x"}
    }}  # fmt: skip
    assert overlay(row) == {"tags": {"a": "then"}, "status": "active", "updated_at": None,
                            "version": "1.0.0"}  # fmt: skip


def test_the_state_cache_gives_back_an_alias_move_the_tables_refused() -> None:
    """A refused AliasSet/AliasRemoved (set aside as unstorable) must not stay in the worker's
    cached state: the alias points where it did before; catch-up makes the name load again."""
    from workers.sequencer.state_cache import StateCache

    history, (v1, v2) = _registered(2)
    refs = {v1.uid: v1, v2.uid: v2}
    cache = StateCache()
    key = "model/demo/churn"
    cache.evolve(key, cache.get(key), history)
    first = decide(_cmd(SetAlias, alias="prod", uid=v1.uid), cache.get(key), refs, CTX)
    cache.evolve(key, cache.get(key), first)
    moved = decide(_cmd(SetAlias, alias="prod", uid=v2.uid), cache.get(key), refs, CTX)
    cache.evolve(key, cache.get(key), moved)
    assert cache.get(key).aliases == {"prod": (v2.uid, "1.1.0")}
    cache.give_back(moved[0])
    assert cache.get(key).aliases == {"prod": (v1.uid, "1.0.0")}
    removed = decide(_cmd(RemoveAlias, alias="prod"), cache.get(key), refs, CTX)
    cache.evolve(key, cache.get(key), removed)
    assert cache.get(key).aliases == {}
    cache.give_back(removed[0])
    assert cache.get(key).aliases == {"prod": (v1.uid, "1.0.0")}
    assert cache.get(key).versions == {"1.0.0", "1.1.0"}  # versions untouched
    cache.forget(first[0])
    assert key not in cache


async def test_registrations_pay_no_alias_query_and_aliases_load_once_per_name() -> None:
    from registry_core.persistence.db import Q
    from workers.sequencer.state_cache import StateCache

    uid = uuid4()
    asked: list[str] = []

    class _Conn:
        async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
            asked.append("aliases" if query == Q["aliases_for_keys"] else "versions")
            if query == Q["aliases_for_keys"]:
                return [{"registry": "model", "space": "demo", "name": "churn", "alias": "prod",
                         "uid": uid, "version": "1.0.0"}]  # fmt: skip
            return [{"registry": "model", "space": "demo", "name": "churn", "version": "1.0.0"}]

    cache, key, conn = StateCache(), "model/demo/churn", _Conn()
    await cache.load(conn, {key})  # type: ignore[arg-type]  # a batch of registrations
    assert asked == ["versions"] and cache.get(key).versions == {"1.0.0"}
    await cache.load(conn, {key}, {key})  # type: ignore[arg-type]  # a delete of that name
    assert asked == ["versions", "aliases"]
    assert cache.get(key).aliases == {"prod": (uid, "1.0.0")}
    assert cache.get(key).versions == {"1.0.0"}
    await cache.load(conn, {key}, {key})  # type: ignore[arg-type]  # known: no query
    assert asked == ["versions", "aliases"]
